using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// The whole server publishing to a Kafka-protocol broker (librdkafka's mock cluster over TCP): each conversation's order
/// across many concurrent senders, and a broker stopped and started again mid-stream (the backlog waits in the database
/// and drains in order).
/// </summary>
public sealed class KafkaStreamTests
{
    private static ParleyFactory Server(string bootstrap, string topic) => new(settings =>
    {
        settings["Events:Kafka:BootstrapServers"] = bootstrap;
        settings["Events:Kafka:EventsTopic"] = topic;
        settings["Events:Kafka:NotificationsTopic"] = topic + "-notifications";
        settings["Events:Kafka:DeliveryTimeout"] = "00:00:03";
        settings["Events:PollInterval"] = "00:00:00.010";
    });

    internal static List<JsonElement> Records(IEnumerable<ConsumeResult<string, byte[]>> read) =>
        [.. read.Select(r => JsonDocument.Parse(r.Message.Value).RootElement.Clone())];

    [Fact(Timeout = 120_000)]
    public async Task ConcurrentSenders_EachConversationsRecordsArriveInSeqOrder()
    {
        var ct = TestContext.Current.CancellationToken;
        using var cluster = new KafkaMockCluster();
        var topic = "events-" + Guid.NewGuid().ToString("N")[..8];
        await using var factory = Server(cluster.BootstrapServers, topic);
        var users = Enumerable.Range(0, 6).Select(i => NewUser($"user{i}")).ToList();
        var owner = factory.BoundedApi(users[0]);
        var groups = new[] { await owner.CreateGroupAsync("a", [.. users.Skip(1)]), await owner.CreateGroupAsync("b", [.. users.Skip(1)]) };
        const int PerUser = 20;

        await Task.WhenAll(users.Select(user => Task.Run(async () =>
        {
            var api = factory.BoundedApi(user);
            for (var i = 0; i < PerUser; i++)
            {
                await api.SendTextAsync(groups[i % 2].Id, $"{user} {i}");
            }
        }, ct)));

        var expected = 2 + users.Count * PerUser;
        var records = Records(cluster.Read(topic, expected, TimeSpan.FromSeconds(60)));
        Assert.Equal(expected, records.Count);
        foreach (var group in groups)
        {
            var seqs = records.Where(r => r.GetProperty("conversation_id").GetGuid() == group.Id).Select(r => r.GetProperty("seq").GetInt64()).ToList();
            Assert.Equal(Enumerable.Range(1, 1 + users.Count * PerUser / 2).Select(i => (long)i), seqs);
        }

        Assert.Equal(expected, records.Select(r => r.GetProperty("event_id").GetString()).Distinct().Count());
    }

    [Fact(Timeout = 120_000)]
    public async Task BrokerStoppedAndRestarted_BacklogWaitsThenDrainsInOrder()
    {
        var ct = TestContext.Current.CancellationToken;
        var first = new KafkaMockCluster();
        var port = int.Parse(first.BootstrapServers.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        var topic = "events-" + Guid.NewGuid().ToString("N")[..8];
        await using var factory = Server(first.BootstrapServers, topic);
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 5; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"before {i}");
        }

        var before = Records(first.Read(topic, 6, TimeSpan.FromSeconds(30)));
        Assert.Equal(6, before.Count);

        // The broker goes away: sends go on, the backlog waits in the database and /ready says so.
        first.Dispose();
        for (var i = 0; i < 10; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"during {i}");
        }

        using var client = factory.CreateClient();
        var degraded = "";
        for (var i = 0; i < 300 && !(degraded.Contains("Degraded", StringComparison.Ordinal) && degraded.Contains("backlog 10 ", StringComparison.Ordinal)); i++)
        {
            using var response = await client.GetAsync("/ready", ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            degraded = await response.Content.ReadAsStringAsync(ct);
            await Task.Delay(100, ct);
        }

        Assert.Contains("publishing fails", degraded, StringComparison.Ordinal);
        Assert.Contains("backlog 10 ", degraded, StringComparison.Ordinal);

        // A broker again at the old address (a new mock cluster behind a forwarder on that port).
        using var second = new KafkaMockCluster();
        await using var forwarder = new TcpForwarder(port, int.Parse(second.BootstrapServers.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        for (var i = 0; i < 5; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"after {i}");
        }

        var after = Records(second.Read(topic, 15, TimeSpan.FromSeconds(60)));
        Assert.Equal(
            [.. Enumerable.Range(0, 10).Select(i => $"during {i}"), .. Enumerable.Range(0, 5).Select(i => $"after {i}")],
            after.Select(r => r.GetProperty("payload").GetProperty("content").GetString()));
        Assert.Equal(Enumerable.Range(7, 15).Select(i => (long)i), after.Select(r => r.GetProperty("seq").GetInt64()));
    }
}

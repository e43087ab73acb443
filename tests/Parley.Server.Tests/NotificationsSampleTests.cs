using System.Collections.Concurrent;
using Confluent.Kafka;
using Microsoft.Extensions.DependencyInjection;
using Parley.Notifications.Sample;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// The consumer sample (samples/Parley.Notifications.Sample) against a mock Kafka cluster fed by a real server: one push
/// per notification, a republished record (same event_id) skipped.
/// </summary>
public sealed class NotificationsSampleTests
{
    [Fact(Timeout = 120_000)]
    public async Task Sample_SendsOnePushPerNotification_AndSkipsARepublishedRecord()
    {
        var ct = TestContext.Current.CancellationToken;
        using var cluster = new KafkaMockCluster();
        var topic = "notifications-" + Guid.NewGuid().ToString("N")[..8];
        await using var factory = new ParleyFactory(settings =>
        {
            settings["Events:Kafka:BootstrapServers"] = cluster.BootstrapServers;
            settings["Events:Kafka:EventsTopic"] = topic + "-events";
            settings["Events:Kafka:NotificationsTopic"] = topic;
            settings["Events:PollInterval"] = "00:00:00.010";
        });
        var (aliceId, bobId) = (NewUser("alice"), NewUser("bob"));
        var alice = factory.BoundedApi(aliceId);
        var conversation = await alice.CreateDirectAsync(bobId);
        await alice.SendTextAsync(conversation.Id, "first");
        await alice.SendTextAsync(conversation.Id, "second");
        var published = cluster.Read(topic, 2, TimeSpan.FromSeconds(30));
        Assert.Equal(2, published.Count);

        // The relay publishes at least once: the same record again, as after a takeover. And records that are not
        // Parley's (another producer's, a tombstone) in the same partition: skipped, not a stop of the worker.
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers }).Build())
        {
            await producer.ProduceAsync(topic, published[0].Message, ct);
            await producer.ProduceAsync(topic, new Message<string, byte[]> { Key = published[0].Message.Key, Value = "not json"u8.ToArray() }, ct);
            await producer.ProduceAsync(topic, new Message<string, byte[]> { Key = published[0].Message.Key, Value = "{\"type\":\"notification.message\"}"u8.ToArray() }, ct);
        }

        await alice.SendTextAsync(conversation.Id, "third");
        var pushes = new Recorder { FailFirst = true }; // the push service fails once: the push is tried again, not lost
        using var worker = NotificationsWorker.Build(
            [$"--Kafka:BootstrapServers={cluster.BootstrapServers}", $"--Kafka:Topic={topic}", $"--Kafka:GroupId=push-{Guid.NewGuid():N}"],
            services => services.AddSingleton<IPushSender>(pushes));
        await worker.StartAsync(ct);
        try
        {
            // "third" comes after the republished copy in bob's partition: once it is pushed, the copy was seen.
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!pushes.Sent.Any(p => p.Preview == "third") && DateTime.UtcNow < until)
            {
                await Task.Delay(50, ct);
            }
        }
        finally
        {
            await worker.StopAsync(CancellationToken.None);
        }

        Assert.Equal(["first", "second", "third"], pushes.Sent.Select(p => p.Preview));
        Assert.All(pushes.Sent, p => Assert.Equal((bobId, aliceId, "direct"), (p.UserId, p.SenderId, p.ConversationType)));
        // The badge is counted when the relay builds the record (docs/events.md): at least the messages sent by then.
        Assert.All(pushes.Sent.Select((p, i) => (p.UnreadCount, AtLeast: i + 1)), p => Assert.InRange(p.UnreadCount, p.AtLeast, 3));
        Assert.Equal(3, pushes.Sent[^1].UnreadCount);
    }

    private sealed class Recorder : IPushSender
    {
        private readonly ConcurrentQueue<Notification> _sent = new();

        public IReadOnlyList<Notification> Sent => [.. _sent];

        public bool FailFirst { get; set; }

        public Task SendAsync(Notification notification, CancellationToken cancellationToken)
        {
            if (FailFirst)
            {
                FailFirst = false;
                throw new HttpRequestException("push service unavailable");
            }

            _sent.Enqueue(notification);
            return Task.CompletedTask;
        }
    }
}

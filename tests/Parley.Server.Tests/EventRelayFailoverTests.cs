using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Confluent.Kafka;
using Npgsql;
using Parley.Server.Events;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// One active relay per deployment (docs/events.md): two instances on one PostgreSQL database publish each event once; a
/// relay that published but could not record its position (its instance stopped, or was killed with SIGKILL) has the batch
/// republished by the next owner, with the same event ids and bytes, and nothing is lost. A trigger the test installs makes
/// recording the position fail, which opens the window between publishing and recording.
/// </summary>
[Trait("Store", "Independent")]
public sealed partial class EventRelayFailoverTests
{
    private static Dictionary<string, string?> KafkaSettings(string bootstrap, string topic) => new()
    {
        ["Events:Kafka:BootstrapServers"] = bootstrap,
        ["Events:Kafka:EventsTopic"] = topic,
        ["Events:Kafka:NotificationsTopic"] = topic + "-notifications",
        ["Events:Kafka:DeliveryTimeout"] = "00:00:03",
        ["Events:PollInterval"] = "00:00:00.010",
        ["Events:LeaseDuration"] = "00:00:02",
    };

    private static List<(string EventId, long Seq, string Body)> Read(KafkaMockCluster cluster, string topic, int count, TimeSpan timeout) =>
        Read(cluster, topic, records => records.Count >= count, timeout);

    private static List<(string EventId, long Seq, string Body)> Read(
        KafkaMockCluster cluster, string topic, Func<List<(string EventId, long Seq, string Body)>, bool> done, TimeSpan timeout) =>
        Parse(KafkaMockCluster.Read(cluster.BootstrapServers, topic, records => done(Parse(records)), timeout));

    private static List<(string EventId, long Seq, string Body)> Parse(IEnumerable<ConsumeResult<string, byte[]>> records) =>
        [.. records.Select(r =>
        {
            var body = Encoding.UTF8.GetString(r.Message.Value);
            using var json = JsonDocument.Parse(body);
            return (json.RootElement.GetProperty("event_id").GetString()!, json.RootElement.GetProperty("seq").GetInt64(), body);
        })];

    /// <summary>
    /// Makes every attempt to record a new position fail (a trigger on the relay's row): the relay publishes and cannot
    /// record, as when its process dies in between. Taking or giving up the lease still works.
    /// </summary>
    private static async Task RefuseRecordingAsync(string database, bool refuse, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(
            refuse
                ? """
                  CREATE FUNCTION refuse_relay_position() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN RAISE EXCEPTION 'recording the position is refused by the test'; END $$;
                  CREATE TRIGGER refuse_relay_position BEFORE UPDATE ON event_relay FOR EACH ROW
                  WHEN (OLD.pos IS DISTINCT FROM NEW.pos) EXECUTE FUNCTION refuse_relay_position();
                  """
                : "DROP TRIGGER refuse_relay_position ON event_relay; DROP FUNCTION refuse_relay_position();",
            connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<long> RecordedPositionAsync(string database, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT pos FROM event_relay WHERE sink = 'kafka'", connection);
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>What the relays, sequencers and Kafka clients of the instances logged at warning or above, for a failure message.</summary>
    private static string RelayLog(LogCapture[] logs) =>
        string.Join('\n', logs.SelectMany((log, instance) => log.Entries
            .Where(e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Warning || e.EventId.Id is 7101)
            .Select(e => $"[{instance}] {e.Level} {e.EventId.Id} {e.Message}")));

    private static int Distinct(List<(string EventId, long Seq, string Body)> records) => records.Select(r => r.EventId).Distinct().Count();

    /// <summary>Every record after the first copy of its event id is a republished one: same bytes; first copies in seq order.</summary>
    private static void AssertRepublishedUnchanged(List<(string EventId, long Seq, string Body)> records, int distinct)
    {
        var first = new Dictionary<string, string>();
        var order = new List<long>();
        foreach (var (eventId, seq, body) in records)
        {
            if (first.TryGetValue(eventId, out var earlier))
            {
                Assert.Equal(earlier, body);
            }
            else
            {
                first[eventId] = body;
                order.Add(seq);
            }
        }

        Assert.Equal(distinct, first.Count);
        Assert.Equal(Enumerable.Range(1, distinct).Select(i => (long)i), order);
    }

    [Fact(Timeout = 120_000)]
    public async Task TwoInstances_PublishEachEventOnce_AndTheNextOwnerRepublishesWhatWasNotRecorded()
    {
        var ct = TestContext.Current.CancellationToken;
        using var cluster = new KafkaMockCluster();
        var topic = "events-" + Guid.NewGuid().ToString("N")[..8];
        var logs = new[] { new LogCapture(), new LogCapture() };
        await using var instances = new TwoInstances(
            (_, settings) =>
            {
                foreach (var (key, value) in KafkaSettings(cluster.BootstrapServers, topic))
                {
                    settings[key] = value;
                }
            },
            services: (instance, services) => services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs[instance]));
        var alice = NewUser("alice");
        var conversation = await instances.First.BoundedApi(alice).CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 10; i++)
        {
            await (i % 2 == 0 ? instances.First : instances.Second).BoundedApi(alice).SendTextAsync(conversation.Id, $"m{i}");
        }

        // Both instances run a relay; one owns the lease: every event once, and nothing more in the seconds after (the
        // other relay looks at the lease every LeaseDuration / 3).
        var arrived = Read(cluster, topic, r => Distinct(r) >= 11, TimeSpan.FromSeconds(30));
        Assert.True(Distinct(arrived) == 11, $"{Distinct(arrived)} of 11 events published; the relays said:\n{RelayLog(logs)}");
        var once = Read(cluster, topic, 12, TimeSpan.FromSeconds(3));
        Assert.Equal(11, once.Count);
        AssertRepublishedUnchanged(once, 11);

        var leader = instances.First.Services.GetRequiredService<EventStreamStatus>().For("kafka").IsLeader ? instances.First : instances.Second;
        var follower = ReferenceEquals(leader, instances.First) ? instances.Second : instances.First;
        var database = leader.StorageSettings()["ConnectionStrings:Postgres"]!;
        await RefuseRecordingAsync(database, refuse: true, ct);
        for (var i = 10; i < 15; i++)
        {
            await follower.BoundedApi(alice).SendTextAsync(conversation.Id, $"m{i}");
        }

        // Published, not recorded: then the leader stops.
        var published = Distinct(Read(cluster, topic, r => Distinct(r) >= 16, TimeSpan.FromSeconds(30)));
        Assert.True(published == 16, $"{published} of 16 events published; the relays said:\n{RelayLog(logs)}");
        await leader.DisposeAsync();
        Assert.Equal(11, await RecordedPositionAsync(database, ct));
        await RefuseRecordingAsync(database, refuse: false, ct);

        // The follower takes the lease over and publishes again from the recorded position.
        var all = Read(cluster, topic, r => r.Where(x => x.Seq > 11).GroupBy(x => x.EventId).Count(g => g.Count() >= 2) >= 5, TimeSpan.FromSeconds(60));
        AssertRepublishedUnchanged(all, 16);
        Assert.All(all.Where(r => r.Seq > 11).GroupBy(r => r.EventId), g => Assert.True(g.Count() >= 2, $"seq {g.First().Seq} was not republished"));
        for (var i = 0; i < 100 && await RecordedPositionAsync(database, ct) < 16; i++)
        {
            await Task.Delay(100, ct);
        }

        Assert.Equal(16, await RecordedPositionAsync(database, ct));
        Assert.True(follower.Services.GetRequiredService<EventStreamStatus>().For("kafka").IsLeader);
    }

    [Fact(Timeout = 60_000)]
    public async Task TwoInstances_BacklogAboveTheBound_ReportedByBoth_LoggedByTheLeaderOnly()
    {
        var sinks = new[] { new InMemoryEventSink { IsDown = true }, new InMemoryEventSink { IsDown = true } };
        var logs = new[] { new LogCapture(), new LogCapture() };
        await using var instances = new TwoInstances(
            (_, settings) =>
            {
                settings["Events:PollInterval"] = "00:00:00.010";
                settings["Events:BacklogAlert"] = "5";
            },
            services: (instance, services) =>
            {
                services.AddSingleton<IEventSink>(sinks[instance]);
                services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs[instance]);
            });
        var alice = instances.First.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 10; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        static bool Alert(LogCapture.Entry e) => e.EventId.Id == 7105;
        var first = await Task.WhenAny(logs.Select(l => l.WaitForAsync(Alert, TimeSpan.FromSeconds(20))));
        await first;
        // Both measure the backlog once a second: give the other instance three chances to log it too.
        foreach (var factory in new[] { instances.First, instances.Second })
        {
            await WaitForReadyEventsAsync(factory, body => body.Contains("above Events:BacklogAlert (5)", StringComparison.Ordinal));
        }

        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);
        var alerted = logs.Select(l => l.Entries.Count(Alert)).ToArray();
        var leader = instances.First.Services.GetRequiredService<EventStreamStatus>().For("memory").IsLeader ? 0 : 1;
        Assert.Equal(1, alerted[leader]); // once a minute at most
        Assert.Equal(0, alerted[1 - leader]);
        Assert.Contains("(Events:BacklogAlert 5)", logs[leader].Entries.Single(Alert).Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task TwoInstances_ASinkThatPublishesNothing_IsDegradedOnBoth_NotOnlyOnItsPublisher()
    {
        // The instance without the lease has no failure of its own to report: the age of the backlog shows it.
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var sinks = new[] { new InMemoryEventSink { IsDown = true }, new InMemoryEventSink { IsDown = true } };
        await using var instances = new TwoInstances(
            (_, settings) =>
            {
                settings["Events:PollInterval"] = "00:00:00.010";
                settings["Events:BacklogAgeAlert"] = "00:00:02";
            },
            services: (instance, services) => services.AddSingleton<IEventSink>(sinks[instance]));
        var alice = instances.First.BoundedApi(NewUser("alice"));
        await alice.SendTextAsync((await alice.CreateDirectAsync(NewUser("bob"))).Id, "waits");

        foreach (var factory in new[] { instances.First, instances.Second })
        {
            await WaitForReadyEventsAsync(factory, body => body.Contains("older than Events:BacklogAgeAlert (00:00:02)", StringComparison.Ordinal) && body.Contains("Degraded", StringComparison.Ordinal));
        }

        // Back up: published, and both healthy again.
        foreach (var sink in sinks)
        {
            sink.IsDown = false;
        }

        foreach (var factory in new[] { instances.First, instances.Second })
        {
            await WaitForReadyEventsAsync(factory, body => !body.Contains("Degraded", StringComparison.Ordinal) && body.Contains("backlog 0 ", StringComparison.Ordinal));
        }
    }

    private static async Task WaitForReadyEventsAsync(ParleyFactory factory, Func<string, bool> done)
    {
        using var client = factory.CreateClient();
        var body = "";
        for (var i = 0; i < 200; i++)
        {
            using var response = await client.GetAsync(new Uri("/ready", UriKind.Relative), TestContext.Current.CancellationToken);
            body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            if (done(body))
            {
                return;
            }

            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        Assert.Fail($"/ready never reported what was expected; last: {body}");
    }

    [Fact(Timeout = 180_000)]
    public async Task ServerKilledBetweenPublishingAndRecording_TheNextServerRepublishes_NothingLost()
    {
        var ct = TestContext.Current.CancellationToken;
        var database = TestPostgres.CreateDatabase(fromTemplate: true);
        var directory = Directory.CreateTempSubdirectory("parley-events-");
        using var cluster = new KafkaMockCluster();
        var topic = "events-" + Guid.NewGuid().ToString("N")[..8];
        var settings = TestServerSettings.Create(Path.Combine(directory.FullName, "unused.db"));
        settings.Remove("ConnectionStrings:Sqlite");
        settings["Storage:Provider"] = "Postgres";
        settings["ConnectionStrings:Postgres"] = database;
        foreach (var (key, value) in KafkaSettings(cluster.BootstrapServers, topic))
        {
            settings[key] = value;
        }

        string[] arguments = ["--urls", "http://127.0.0.1:0", .. settings.Select(s => $"--{s.Key}={s.Value}")];
        try
        {
            long recorded;
            int before;
            await using (var server = ServerCommand.Start(directory.FullName, "Production", arguments))
            {
                using var alice = await ClientAsync(server, "alice");
                var conversation = await alice.CreateDirectAsync("bob");
                for (var i = 0; i < 3; i++)
                {
                    await alice.SendTextAsync(conversation.Id, $"before {i}");
                }

                Assert.Equal(4, Read(cluster, topic, 4, TimeSpan.FromSeconds(30)).Count);
                await RefuseRecordingAsync(database, refuse: true, ct);
                for (var i = 0; i < 5; i++)
                {
                    await alice.SendTextAsync(conversation.Id, $"unrecorded {i}");
                }

                Assert.Equal(9, Distinct(Read(cluster, topic, r => Distinct(r) >= 9, TimeSpan.FromSeconds(30))));
                // SIGKILL (disposing kills the process): published, never recorded.
                await server.DisposeAsync();
                before = Read(cluster, topic, _ => false, TimeSpan.FromSeconds(3)).Count;
                recorded = await RecordedPositionAsync(database, ct);
                await RefuseRecordingAsync(database, refuse: false, ct);
            }

            Assert.Equal(4, recorded);
            await using (var restarted = ServerCommand.Start(directory.FullName, "Production", arguments))
            {
                await restarted.WaitForOutputAsync("Now listening", TimeSpan.FromSeconds(60));
                var all = Read(cluster, topic, r => r.Count >= before + 5, TimeSpan.FromSeconds(60));
                AssertRepublishedUnchanged(all, 9);
                // The restarted server published 5..9 again (the same records: checked above), after everything the killed one published.
                Assert.Equal(Enumerable.Range(5, 5).Select(i => (long)i), all[before..].Select(r => r.Seq));
            }
        }
        finally
        {
            await TestPostgres.DropDatabaseAsync(database);
            directory.Delete(recursive: true);
        }
    }

    private static async Task<ParleyApi> ClientAsync(RunningServer server, string userId)
    {
        await server.WaitForOutputAsync("Now listening", TimeSpan.FromSeconds(60));
        var address = ListeningAddress().Match(server.Output);
        Assert.True(address.Success, server.Output);
        var client = new HttpClient { BaseAddress = new Uri(address.Value), Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ParleyFactory.Token(userId));
        return new ParleyApi(client);
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+")]
    private static partial Regex ListeningAddress();
}

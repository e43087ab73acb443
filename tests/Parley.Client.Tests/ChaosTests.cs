using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Parley.Client.Tests.Infrastructure;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// The delivery promise under failure (docs/delivery.md): users on several devices exchange messages through
/// Parley.Client while the server, a child process, is killed with SIGKILL and restarted again and again,
/// and client connections are cut at random; on PostgreSQL also with three instances behind a relay that spreads
/// connections over them (like a load balancer) and carry live events to each other through a Redis
/// (docs/scaling.md), which is itself restarted, losing its routes, a few times. Afterwards every message is on
/// every member device exactly once and in order, no message exists that no client sent, and unread counts and
/// receipts agree with the messages.
/// Fixed seed; the schedule of failures is reproducible, the interleaving of threads is not.
/// The run is measured in kills, not wall-clock time: on a loaded machine a restart takes longer, so the failures
/// take longer, and the checks afterwards wait as much longer (see <see cref="SettleTime"/>); every phase has a
/// ceiling so that the three runs stay within about a quarter of an hour however slow the machine is.
/// </summary>
[Trait("Category", "Chaos")]
[Trait("Store", "Independent")]
public sealed class ChaosTests
{
    private const int Seed = 20261124;

    // About 35 s of failures on an idle 2-core machine (a kill every 3-6 s, a restart in 1-2 s, cuts between).
    private const int Kills = 6;

    // With Redis: restarted this often during the failures (every 4-8 s, down for 0.3-1.5 s each time).
    private const int RedisRestarts = 3;

    // The failures stop after this long even short of Kills (a machine so loaded that restarts take 20 s).
    private static readonly TimeSpan MaxFailures = TimeSpan.FromSeconds(120);

    // Convergence (every send acknowledged, every device caught up, receipts arrived) gets at least this long...
    private static readonly TimeSpan MinSettle = TimeSpan.FromSeconds(60);

    // ...and at most this long: Timeout below = start-up + MaxFailures + MaxSettle + checks and disposal.
    private static readonly TimeSpan MaxSettle = TimeSpan.FromSeconds(120);
    private static readonly string[] Users = ["alice", "bob", "carol", "dave"];
    private static readonly string[] DeviceNames = ["phone", "laptop"];

    [Theory(Timeout = 330_000)]
    [InlineData("sqlite", 1, false)]
    [InlineData("postgres", 1, false)]
    [InlineData("postgres", 3, true)]
    public async Task KillsRestartsAndDrops_EveryMessageOnEveryMemberDeviceOnceInOrder(string store, int instances, bool redis)
    {
        var ct = TestContext.Current.CancellationToken;
        var random = new Random(Seed);
        var data = Directory.CreateTempSubdirectory("parley-chaos-");
        string? postgres = null;
        await using var redisServer = redis ? await RedisServer.StartAsync() : null;
        var settings = new Dictionary<string, string>
        {
            ["Auth:Jwt:SigningKey"] = ServerFactory.SigningKey,
            ["Auth:Jwt:Issuer"] = ServerFactory.Issuer,
            ["Auth:Jwt:Audience"] = ServerFactory.Audience,
            ["Limits:SendBurst"] = "10000",
            ["Limits:SendRatePerSecond"] = "10000",
            ["Realtime:InboundBurst"] = "10000",
            ["Realtime:InboundFramesPerSecond"] = "10000",
            ["Delivery:CursorInterval"] = "00:00:01",
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Warning",
        };
        if (store == "postgres")
        {
            postgres = TestPostgres.CreateDatabase(fromTemplate: false);
            settings["Storage:Provider"] = "Postgres";
            settings["ConnectionStrings:Postgres"] = postgres;
        }
        else
        {
            settings["ConnectionStrings:Sqlite"] = $"Data Source={Path.Combine(data.FullName, "parley.db")}";
        }

        if (redisServer is not null)
        {
            settings["Fanout:Provider"] = "Redis";
            settings["ConnectionStrings:Redis"] = redisServer.ConnectionString + ",connectRetry=1,connectTimeout=2000";
            // A killed instance's routes go with its liveness key; long enough for a heartbeat on a loaded machine.
            settings["Fanout:Redis:InstanceTtl"] = "00:00:06";
        }

        // Several instances share the database behind the relay, which spreads connections over them like a load
        // balancer; Redis carries live events between them (while it is down, the cursor check and resumes do).
        var servers = Enumerable.Range(0, instances).Select(_ => new ServerProcess(settings)).ToList();
        await Task.WhenAll(servers.Select(s => s.StartAsync(ct)));
        await using var relay = new TcpRelay([.. servers.Select(s => s.Address)]);
        try
        {
            await RunAsync(servers, relay, redisServer, random, ct);
        }
        finally
        {
            foreach (var server in servers)
            {
                await server.DisposeAsync();
            }

            if (postgres is not null)
            {
                await TestPostgres.DropDatabaseAsync(postgres);
            }

            data.Delete(recursive: true);
        }
    }

    private static async Task RunAsync(List<ServerProcess> servers, TcpRelay relay, RedisServer? redis, Random random, CancellationToken ct)
    {
        // Conversations, created directly on the first server: two direct ones and a group of everyone.
        var rest = Users.ToDictionary(u => u, u => new ParleyClient(servers[0].Address, ParleyCredentials.Bearer(ServerFactory.Token(u))));
        var direct1 = await rest["alice"].CreateConversationAsync(CreateConversationRequest.Direct("bob"), ct);
        var direct2 = await rest["carol"].CreateConversationAsync(CreateConversationRequest.Direct("dave"), ct);
        var group = await rest["alice"].CreateConversationAsync(CreateConversationRequest.Group("everyone", "bob", "carol", "dave"), ct);
        var conversations = new Dictionary<Guid, string[]>
        {
            [direct1.Id] = ["alice", "bob"],
            [direct2.Id] = ["carol", "dave"],
            [group.Id] = Users,
        };

        // Devices, through the relay that cuts connections.
        var devices = new List<ChaosDevice>();
        foreach (var user in Users)
        {
            foreach (var name in DeviceNames)
            {
                var client = new ParleyClient(relay.Address, ParleyCredentials.Bearer(ServerFactory.Token(user)));
                var realtime = new ParleyRealtime(client, new ParleyRealtimeOptions
                {
                    DeviceId = name,
                    InitialReconnectDelay = TimeSpan.FromMilliseconds(100),
                    MaxReconnectDelay = TimeSpan.FromSeconds(1),
                    SendRetryDelay = TimeSpan.FromMilliseconds(300),
                });
                devices.Add(new ChaosDevice(user, name, client, realtime, new Random(random.Next())));
            }
        }

        await Task.WhenAll(devices.Select(d => d.Realtime.ConnectAsync(ct)));
        using var stop = new CancellationTokenSource();
        var readers = devices.Select(d => d.ReadAsync(ct)).Concat(devices.Select(d => d.WatchAsync(ct))).ToList();
        var attempted = new ConcurrentDictionary<string, Guid>();
        var senders = devices.Select(d => d.SendAsync(conversations, attempted, stop.Token, ct)).ToList();

        // Failures: the server is killed and restarted, connections are cut, on a seeded schedule, until Kills kills
        // (each waits for the restarted server to be ready, so a slow machine takes longer rather than doing less).
        var failures = Stopwatch.StartNew();
        var drops = 0;
        var nextKill = DateTime.UtcNow.AddMilliseconds(random.Next(3000, 6000));
        var kills = 0;
        var nextRedisRestart = DateTime.UtcNow.AddMilliseconds(random.Next(4000, 8000));
        var redisRestarts = 0;
        var cutSinceRedisRestart = true;
        while (kills < Kills && failures.Elapsed < MaxFailures)
        {
            await Task.Delay(random.Next(800, 2500), ct);
            if (DateTime.UtcNow >= nextKill)
            {
                var server = servers[random.Next(servers.Count)];
                kills++;
                await server.KillAsync();
                await Task.Delay(random.Next(200, 1000), ct);
                await server.StartAsync(ct);
                nextKill = DateTime.UtcNow.AddMilliseconds(random.Next(3000, 6000));
            }
            else if (redis is not null && redisRestarts < RedisRestarts && DateTime.UtcNow >= nextRedisRestart)
            {
                // Every key is lost (routes, liveness); events published meanwhile do not reach other instances.
                redisRestarts++;
                await redis.StopAsync();
                await Task.Delay(random.Next(300, 1500), ct);
                await redis.StartAgainAsync();
                await WaitForFanoutAsync(servers, ct);
                cutSinceRedisRestart = false;
                nextRedisRestart = DateTime.UtcNow.AddMilliseconds(random.Next(4000, 8000));
            }
            else
            {
                relay.DropAll();
                drops++;
                cutSinceRedisRestart = true;
            }
        }

        failures.Stop();
        Assert.True(kills > 0, $"no kill within {MaxFailures}");
        Assert.True(redis is null || redisRestarts > 0, $"no Redis restart within {MaxFailures}");
        if (!cutSinceRedisRestart)
        {
            // A receipt moved while Redis was down reaches a device connected to another instance with its next resume
            // only (the cursor check repairs sequenced events, not watermarks): make every device resume once more.
            relay.DropAll();
            drops++;
        }

        await stop.CancelAsync();
        var settle = SettleTime(failures.Elapsed);
        var settled = DateTime.UtcNow + settle;
        var what = $"{kills} kills, {(redis is null ? "" : $"{redisRestarts} Redis restarts, ")}{drops} connection cuts in {failures.Elapsed.TotalSeconds:F0} s; "
            + $"{settle.TotalSeconds:F0} s to settle";
        TestContext.Current.TestOutputHelper?.WriteLine($"{servers.Count} instance(s): {what}");
        try
        {
            await Task.WhenAll(senders).WaitAsync(Left(settled), ct);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Sends were not acknowledged after the failures stopped ({what}): "
                + string.Join("; ", devices.Select(d => $"{d}: {d.Realtime.State}, {d.Acked.Count} acked, last states {d.States}"))
                + " server log: " + LogTail(servers));
        }
        var acked = devices.SelectMany(d => d.Acked).ToList();
        TestContext.Current.TestOutputHelper?.WriteLine($"{attempted.Count} sends attempted, {acked.Count} acknowledged");
        Assert.True(acked.Count >= 50, $"only {acked.Count} messages acknowledged");

        // Let everything settle: every device reaches each conversation's last position.
        var lastSeqs = new Dictionary<Guid, long>();
        foreach (var (id, members) in conversations)
        {
            lastSeqs[id] = (await rest[members[0]].GetConversationAsync(id, ct)).LastSeq;
        }

        while (devices.Any(d => d.Realtime.State != ConnectionState.Live || !d.HasReached(conversations, lastSeqs)) && DateTime.UtcNow < settled)
        {
            await Task.Delay(100, ct);
        }

        foreach (var device in devices)
        {
            Assert.True(device.HasReached(conversations, lastSeqs), $"{device} did not catch up ({what}): {device.Progress(lastSeqs)}; server log: {LogTail(servers)}");
        }

        foreach (var (conversationId, members) in conversations)
        {
            var history = await AllMessagesAsync(rest[members[0]], conversationId, ct);

            // Nothing doubled, nothing invented: every stored message is one a client sent, once.
            Assert.All(history, m => Assert.True(m.ClientMessageId is not null && attempted.ContainsKey(m.ClientMessageId), $"unknown message {m.Id}"));
            Assert.Equal(history.Count, history.Select(m => m.ClientMessageId).Distinct().Count());
            // Nothing lost: every acknowledged send is stored.
            var stored = history.Select(m => m.Id).ToHashSet();
            Assert.All(acked.Where(m => m.ConversationId == conversationId), m => Assert.Contains(m.Id, stored));

            // Every member device applied every message exactly once, in seq order.
            foreach (var device in devices.Where(d => members.Contains(d.User)))
            {
                var applied = device.MessagesIn(conversationId);
                Assert.Equal(history.Select(m => m.Id), applied.Select(m => m.Id));
                Assert.Equal(history.Select(m => m.Seq), applied.Select(m => m.Seq));
            }

            // Unread counts and receipts agree with the messages.
            foreach (var user in members)
            {
                var view = await rest[user].GetConversationAsync(conversationId, ct);
                Assert.Equal(history.Count(m => m.SenderId != user && m.Seq > view.ReadUpToSeq && m.DeletedAt is null), view.UnreadCount);
                // The newest acknowledged read that placed the watermark on another member's message (so was announced).
                var explicitRead = devices.Where(d => d.User == user).Select(d => d.ReadUpTo(conversationId)).DefaultIfEmpty(0).Max();
                Assert.True(view.ReadUpToSeq >= explicitRead, $"{user}'s read position {view.ReadUpToSeq} is behind an acknowledged read {explicitRead}");
                foreach (var device in devices.Where(d => members.Contains(d.User) && d.User != user))
                {
                    if (servers.Count > 1 && redis is null)
                    {
                        // Without cross-instance fan-out a receipt written through another instance reaches a live
                        // device only with a later resume (docs/delivery.md, limits): none may be invented, though.
                        Assert.True(device.ReadReceiptOf(conversationId, user) <= view.ReadUpToSeq, $"{device} saw a read receipt ahead of the server");
                        continue;
                    }

                    // Receipts are watermarks, not positions: the newest one arrives live or with the catch-up (within the
                    // settle time, or 10 s more if the catch-up used it up).
                    var receiptDeadline = Max(settled, DateTime.UtcNow.AddSeconds(10));
                    while (device.ReadReceiptOf(conversationId, user) < explicitRead && DateTime.UtcNow < receiptDeadline)
                    {
                        await Task.Delay(100, ct);
                    }

                    var seen = device.ReadReceiptOf(conversationId, user);
                    Assert.True(
                        seen <= view.ReadUpToSeq && seen >= explicitRead,
                        $"{device} saw {user} read up to {seen}; server {view.ReadUpToSeq}, acknowledged {explicitRead}. "
                        + $"Reads acknowledged: {string.Join(",", devices.Where(d => d.User == user).SelectMany(d => d.ReadLog(conversationId)))}. "
                        + $"Receipts seen: {device.ReceiptLog(conversationId, user)}. States: {device.StateLog}");
                }
            }
        }

        // With every instance and Redis up, a receipt reaches every member device live: each member reads the last
        // message of each conversation (through the relay, so on any instance). The cursor check repairs sequenced
        // events, not receipts: only the live fan-out carries these to devices on other instances.
        var readLast = new Dictionary<Guid, (long Seq, string[] Readers)>();
        foreach (var (conversationId, members) in conversations)
        {
            var last = (await AllMessagesAsync(rest[members[0]], conversationId, ct))[^1];
            var others = members.Where(u => u != last.SenderId).ToArray();
            foreach (var reader in others)
            {
                await devices.First(d => d.User == reader).Client.MarkReadAsync(last.Id, ct);
            }

            readLast[conversationId] = (last.Seq, others);
        }

        bool Behind(ChaosDevice device, Guid conversationId, string reader) => device.ReadReceiptOf(conversationId, reader) < readLast[conversationId].Seq;
        List<string> Missing() =>
        [
            .. conversations.SelectMany(c => devices.Where(d => c.Value.Contains(d.User))
                .SelectMany(d => readLast[c.Key].Readers.Where(r => Behind(d, c.Key, r)).Select(r => $"{d} has no receipt of {r} for {c.Key:N}"))),
        ];
        var receiptsDeadline = DateTime.UtcNow.AddSeconds(15);
        while (Missing().Count > 0 && DateTime.UtcNow < receiptsDeadline)
        {
            await Task.Delay(100, ct);
        }

        Assert.True(Missing().Count == 0, $"Receipts did not arrive live ({what}): {string.Join("; ", Missing())}");

        foreach (var device in devices)
        {
            await device.DisposeAsync();
        }

        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(30), ct);
        foreach (var client in rest.Values)
        {
            client.Dispose();
        }
    }

    /// <summary>Waits (at most 20 s) until every instance is connected to Redis again (readiness no longer degraded).</summary>
    private static async Task WaitForFanoutAsync(List<ServerProcess> servers, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(20);
        foreach (var server in servers)
        {
            while (DateTime.UtcNow < deadline)
            {
                try
                {
                    var ready = await http.GetStringAsync(new Uri(server.Address, "ready"), ct);
                    if (!ready.Contains("Degraded", StringComparison.Ordinal))
                    {
                        break;
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    // Busy: ask again.
                }

                await Task.Delay(100, ct);
            }
        }
    }

    private static string LogTail(List<ServerProcess> servers) => string.Join(" | ", servers.Select(s => s.LogTail));

    /// <summary>
    /// How long convergence may take: as long as the failures took (which grows with how slowly this machine
    /// restarts the server and serves the clients right now), within [MinSettle, MaxSettle]. The catch-up after
    /// the last kill redoes what the failures did (reconnects, resumes, resends), so it slows down alike.
    /// </summary>
    private static TimeSpan SettleTime(TimeSpan failures) =>
        failures < MinSettle ? MinSettle : failures > MaxSettle ? MaxSettle : failures;

    private static TimeSpan Left(DateTime deadline) =>
        deadline > DateTime.UtcNow ? deadline - DateTime.UtcNow : TimeSpan.Zero;

    private static DateTime Max(DateTime a, DateTime b) => a > b ? a : b;

    private static async Task<List<Message>> AllMessagesAsync(ParleyClient client, Guid conversationId, CancellationToken ct)
    {
        var all = new List<Message>();
        long after = 0;
        while (true)
        {
            var page = await client.ListMessagesAsync(conversationId, limit: 100, after: after, cancellationToken: ct);
            all.AddRange(page.Messages);
            if (page.NextCursor is not { } next)
            {
                return all;
            }

            after = next;
        }
    }

    /// <summary>One simulated device: sends, reads (and marks read), and records every event its app receives.</summary>
    private sealed class ChaosDevice(string user, string name, ParleyClient client, ParleyRealtime realtime, Random random) : IAsyncDisposable
    {
        private readonly Lock _lock = new();
        private readonly List<ParleyEvent> _events = [];
        private readonly Dictionary<Guid, long> _readUpTo = [];

        public string User => user;

        public ParleyRealtime Realtime => realtime;

        public ParleyClient Client => client;

        public ConcurrentBag<Message> Acked { get; } = [];

        public override string ToString() => $"{user}/{name}";

        private readonly ConcurrentQueue<string> _states = new();

        public string States => string.Join(" > ", _states.TakeLast(6));

        public string StateLog => string.Join(" > ", _states);

        private readonly ConcurrentQueue<(Guid Conversation, long Seq, DateTimeOffset At)> _reads = new();

        public IEnumerable<string> ReadLog(Guid conversationId) =>
            _reads.Where(r => r.Conversation == conversationId).Select(r => $"{r.Seq}@{r.At:HH:mm:ss.fff}");

        public string ReceiptLog(Guid conversationId, string reader)
        {
            lock (_lock)
            {
                return string.Join(",", _events.OfType<MessageReadEvent>().Where(e => e.ConversationId == conversationId && e.UserId == reader)
                    .Select(e => $"{e.UpToSeq}@{e.Timestamp:HH:mm:ss.fff}"));
            }
        }

        public async Task WatchAsync(CancellationToken ct)
        {
            try
            {
                await foreach (var change in realtime.ReadStateChangesAsync(ct))
                {
                    _states.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {change.State}{(change.CloseStatus is { } code ? $"({code})" : "")}{(change.Error is { } e ? $"[{e.GetType().Name}: {e.Message}]" : "")}");
                }
            }
            catch (OperationCanceledException)
            {
                // Disposed at the end.
            }
        }

        public async Task ReadAsync(CancellationToken ct)
        {
            try
            {
                await foreach (var e in realtime.ReadEventsAsync(ct))
                {
                    lock (_lock)
                    {
                        _events.Add(e);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Disposed at the end.
            }
        }

        public async Task SendAsync(Dictionary<Guid, string[]> conversations, ConcurrentDictionary<string, Guid> attempted, CancellationToken stop, CancellationToken ct)
        {
            var mine = conversations.Where(c => c.Value.Contains(user)).Select(c => c.Key).ToArray();
            var n = 0;
            while (!stop.IsCancellationRequested)
            {
                var conversationId = mine[random.Next(mine.Length)];
                var clientMessageId = $"{user}-{name}-{n++}";
                attempted[clientMessageId] = conversationId;
                // Retried by the client with the same id until the server acknowledges it, across kills and cuts.
                Acked.Add(await realtime.SendAsync(SendMessageRequest.Text(conversationId, $"{this} #{n}", clientMessageId), ct));
                if (random.Next(4) == 0)
                {
                    await MarkLatestReadAsync(conversationId, ct);
                }

                try
                {
                    await Task.Delay(random.Next(50, 300), stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }

        /// <summary>Marks the newest message this device has seen as read (over REST; a failure during an outage is retried later).</summary>
        private async Task MarkLatestReadAsync(Guid conversationId, CancellationToken ct)
        {
            var latest = MessagesIn(conversationId).LastOrDefault();
            if (latest is null)
            {
                return;
            }

            try
            {
                var state = await client.MarkReadAsync(latest.Id, ct);
                _reads.Enqueue((conversationId, state.ReadUpToSeq, DateTimeOffset.UtcNow));
                // Only a read that put the watermark on someone else's message is announced (message_read): a watermark
                // that got there, or beyond, by the user's own send moved without an event, by design.
                if (state.ReadUpToSeq == latest.Seq && latest.SenderId != user)
                {
                    lock (_lock)
                    {
                        _readUpTo[conversationId] = Math.Max(_readUpTo.GetValueOrDefault(conversationId), state.ReadUpToSeq);
                    }
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or ParleyApiException { StatusCode: HttpStatusCode.ServiceUnavailable } or TaskCanceledException)
            {
                // The server was down or the connection cut: this read simply did not happen.
            }
        }

        public long ReadUpTo(Guid conversationId)
        {
            lock (_lock)
            {
                return _readUpTo.GetValueOrDefault(conversationId);
            }
        }

        public List<Message> MessagesIn(Guid conversationId)
        {
            lock (_lock)
            {
                return _events.OfType<MessageCreatedEvent>().Where(e => e.ConversationId == conversationId).Select(e => e.Message).ToList();
            }
        }

        public long ReadReceiptOf(Guid conversationId, string reader)
        {
            lock (_lock)
            {
                return _events.OfType<MessageReadEvent>().Where(e => e.ConversationId == conversationId && e.UserId == reader)
                    .Select(e => e.UpToSeq).DefaultIfEmpty(0).Max();
            }
        }

        public bool HasReached(Dictionary<Guid, string[]> conversations, Dictionary<Guid, long> lastSeqs) =>
            conversations.Where(c => c.Value.Contains(user)).All(c => MaxSeq(c.Key) >= lastSeqs[c.Key]);

        public string Progress(Dictionary<Guid, long> lastSeqs) =>
            string.Join(", ", lastSeqs.Select(l => $"{l.Key:N}: {MaxSeq(l.Key)}/{l.Value}"));

        private long MaxSeq(Guid conversationId)
        {
            lock (_lock)
            {
                return _events.OfType<ConversationEvent>().Where(e => e.ConversationId == conversationId).Select(e => e.Seq).DefaultIfEmpty(0).Max();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await realtime.DisposeAsync();
            client.Dispose();
        }
    }
}

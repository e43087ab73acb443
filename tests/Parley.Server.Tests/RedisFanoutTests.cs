using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Parley.Server.Fanout;
using Parley.Server.Tests.Infrastructure;
using StackExchange.Redis;

namespace Parley.Server.Tests;

/// <summary>
/// What only the Redis fan-out does: its envelope, routes of instances that died, a Redis restart, and what it does for
/// the events it could not carry while Redis was unreachable.
/// </summary>
[Trait("Store", "Independent")]
public sealed class RedisFanoutTests
{
    [Fact]
    public void Envelope_RoundTrip_KeepsEveryFieldAndTheBytes()
    {
        var conversation = Guid.CreateVersion7();
        var frame = new Realtime.OutboundFrame("{\"type\":\"x\"}"u8.ToArray(), "new_message", conversation, 7, 7, "alice ü");
        var hidden = new Realtime.OutboundFrame("{}"u8.ToArray(), "hidden_event", conversation, 7);
        var message = new FanoutMessage([new FanoutPart(["bob", "carol"], frame), new FanoutPart(["dave"], hidden)], "erin");

        Assert.True(FanoutEnvelope.TryDecode(FanoutEnvelope.Encode(message), out var decoded));

        Assert.Equal("erin", decoded!.ExceptUserId);
        Assert.Equal(2, decoded.Parts.Count);
        var first = decoded.Parts[0].Frame;
        Assert.Equal(["bob", "carol"], decoded.Parts[0].UserIds);
        Assert.Equal(("new_message", (Guid?)conversation, 7L, 7L, "alice ü", false), (first.Type, first.ConversationId, first.Seq, first.DeliverySeq, first.SenderId, first.Transient));
        Assert.Equal(frame.Utf8.ToArray(), first.Utf8.ToArray());
        Assert.Equal(["dave"], decoded.Parts[1].UserIds);
        Assert.Equal((conversation, 7L), (decoded.ConversationId, decoded.Seq));
    }

    [Fact]
    public void Envelope_UnknownVersionOrTruncated_IsRefusedNotGuessed()
    {
        var bytes = FanoutEnvelope.Encode(new FanoutMessage(["bob"], FanoutNode.Frame("x")));

        var otherVersion = (byte[])bytes.Clone();
        otherVersion[0] = 2;
        Assert.False(FanoutEnvelope.TryDecode(otherVersion, out _));
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.False(FanoutEnvelope.TryDecode(bytes.AsSpan(0, length), out _));
        }

        Assert.False(FanoutEnvelope.TryDecode([.. bytes, 0], out _));
    }

    [Theory]
    [InlineData("password=secret,abortConnect=false", "ConnectionStrings:Redis names no Redis server")]
    [InlineData("127.0.0.1:6379,channelPrefix=prod:", "ConnectionStrings:Redis sets channelPrefix")]
    public void Validate_ConnectionStringTheFanoutCannotUse_FailsNamingTheSetting(string connectionString, string expected)
    {
        // Without a server the client throws only at start; with a channel prefix it prefixes this instance's SUBSCRIBE
        // but not the script's PUBLISH, so nothing would cross instances.
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:Redis"] = connectionString }).Build();

        var result = new FanoutOptionsValidator(configuration).Validate(null, new FanoutOptions { Provider = FanoutProvider.Redis });

        Assert.True(result.Failed);
        Assert.Contains(expected, result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InstanceDiedWithoutDeregistering_ItsRoutesAreDroppedOnceItsLivenessExpires()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        var crashed = await FanoutNode.RedisAsync(redis.ConnectionString);
        await crashed.ConnectAsync("alice");
        var crashedId = crashed.Redis.InstanceId;
        await crashed.Redis.DisposeAsync(); // gone without StopAsync: its route and liveness key stay behind

        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        Assert.Contains((RedisValue)crashedId, await db.SetMembersAsync("parley:route:alice"));

        // Liveness (3 s in these nodes) runs out; the next publication for alice drops the dead route.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (await db.KeyExistsAsync("parley:instance:" + crashedId))
        {
            Assert.True(DateTime.UtcNow < deadline, "liveness key never expired");
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }

        await publisher.PublishAsync(["alice"], FanoutNode.Frame("to-the-dead"));
        deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await db.SetMembersAsync("parley:route:alice")).Contains(crashedId))
        {
            Assert.True(DateTime.UtcNow < deadline, "the dead route was not dropped");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task InstanceCrashedAfterCommittingTheLastEvents_TheOthersReadThemBack_AGracefulStopDoesNot()
    {
        await using var redis = await RedisServer.StartAsync();
        var conversation = Guid.CreateVersion7();
        var filler = new WatermarkFiller { LastSeqs = new Dictionary<Guid, long> { [conversation] = 1 } };
        await using var receiver = await FanoutNode.RedisAsync(redis.ConnectionString, filler);
        var alice = await receiver.ConnectAsync("alice"); // primes the conversation: seq 2 expected next
        var stopped = await FanoutNode.RedisAsync(redis.ConnectionString);
        var crashed = await FanoutNode.RedisAsync(redis.ConnectionString);
        await Task.Delay(1500, TestContext.Current.CancellationToken); // the receiver's first look at the crash log is behind it
        var rechecks = filler.Rechecks;

        await stopped.DisposeAsync(); // stopped gracefully: everything it committed was published
        filler.LastSeqs = new Dictionary<Guid, long> { [conversation] = 3 }; // committed by the crashing one, never published
        await crashed.Redis.DisposeAsync(); // gone without StopAsync: its liveness key expires (3 s in these nodes)

        await WaitUntilAsync(() => alice.Labels.Contains("s3"), "the crashed instance's last events never arrived");
        Assert.Equal(["s2", "s3"], alice.Labels.Where(l => l.StartsWith('s')));
        Assert.True(filler.Rechecks > rechecks);

        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var logged = (await admin.GetDatabase().SortedSetRangeByRankAsync("parley:crashed")).Select(v => (string)v!).ToList();
        Assert.Equal([crashed.Redis.InstanceId], logged);
    }

    [Fact]
    public async Task InstanceStalledPastItsTtl_WhenItRunsAgainItReadsBackWhatItMissed()
    {
        await using var redis = await RedisServer.StartAsync();
        var conversation = Guid.CreateVersion7();
        var filler = new WatermarkFiller { LastSeqs = new Dictionary<Guid, long> { [conversation] = 1 } };
        await using var node = await FanoutNode.RedisAsync(redis.ConnectionString, filler);
        var alice = await node.ConnectAsync("alice");

        // As if it had stalled: publishers found its liveness key gone, so events for alice (seqs 2 and 3) skipped it.
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        filler.LastSeqs = new Dictionary<Guid, long> { [conversation] = 3 };
        await admin.GetDatabase().KeyDeleteAsync("parley:instance:" + node.Redis.InstanceId);

        await WaitUntilAsync(() => alice.Labels.Contains("s3"), "what it missed while it counted as dead never arrived");
        Assert.Equal(["s2", "s3"], alice.Labels.Where(l => l.StartsWith('s')));
    }

    [Fact(Timeout = 60_000)]
    public async Task RepairSlowerThanTheInstanceTtl_TheLivenessKeyIsKeptMeanwhile()
    {
        // A repair reads the store for every local user: with many users it outlasts the liveness key's TTL (3 s in these
        // nodes). Waited for inside the beat, it let the key expire: publishers dropped the instance's routes as dead.
        await using var redis = await RedisServer.StartAsync();
        var filler = new WatermarkFiller();
        await using var node = await FanoutNode.RedisAsync(redis.ConnectionString, filler);
        await node.ConnectAsync("alice");
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var key = "parley:instance:" + node.Redis.InstanceId;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        filler.Hold = release.Task;

        await admin.GetDatabase().KeyDeleteAsync(key); // as after a stall: the next beat repairs
        await filler.Held.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        try
        {
            for (var waited = 0; waited < 5_000; waited += 250)
            {
                Assert.True(await admin.GetDatabase().KeyExistsAsync(key), $"the liveness key expired {waited} ms into the repair");
                await Task.Delay(250, TestContext.Current.CancellationToken);
            }
        }
        finally
        {
            release.SetResult();
        }
    }

    [Fact]
    public async Task RedisRestartedWithoutItsData_InstancesRegisterTheirUsersAgainAndDeliveryResumes()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        await using var receiver = await FanoutNode.RedisAsync(redis.ConnectionString);
        var alice = await receiver.ConnectAsync("alice");

        await redis.StopAsync();
        await redis.StartAgainAsync(); // empty: routes and liveness keys are gone

        await PublishUntilDeliveredAsync(publisher, alice, "delivery did not resume after the restart");
    }

    [Fact(Timeout = 60_000)]
    public async Task PublisherCutOffFromRedis_HeldPublicationsArriveInOrderWhenItIsBack_TypingIsNot()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var link = new TcpRelay(new Uri($"tcp://{redis.ConnectionString}"));
        await using var publisher = await FanoutNode.RedisAsync($"127.0.0.1:{link.Address.Port},connectTimeout=1000,connectRetry=1");
        await using var receiver = await FanoutNode.RedisAsync(redis.ConnectionString);
        var alice = await receiver.ConnectAsync("alice");
        await WaitUntilAsync(() => publisher.Redis.IsConnected && receiver.Redis.IsConnected, "an instance did not reach Redis");
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (alice.Socket.Sent.Count == 0)
        {
            // Until alice's route is registered (at once when Redis was reachable at her connect, else at the next beat).
            Assert.True(DateTime.UtcNow < deadline, "nothing reached alice before the cut");
            await publisher.PublishAsync(["alice"], FanoutNode.Frame("before"));
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }


        // Only the publisher's path to Redis breaks (Redis keeps alice's route): new connections stall too.
        link.Pause();
        link.DropAll();
        await WaitUntilAsync(() => !publisher.Redis.IsConnected, "the publisher never noticed it was cut off");
        var conversation = Guid.CreateVersion7();
        await publisher.PublishAsync(["alice"], FanoutNode.Frame("during-1"));
        await publisher.PublishAsync(["alice"], Typing("typing-during"));
        await publisher.PublishAsync(["alice"], FanoutNode.Frame("during-2", conversation, 1));
        await publisher.PublishAsync(["alice"], FanoutNode.Frame("during-3"));
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.DoesNotContain(alice.Labels, l => l.StartsWith("during", StringComparison.Ordinal));

        link.Resume();
        await WaitUntilAsync(() => publisher.Redis.IsConnected, "the publisher did not reconnect");
        await publisher.PublishAsync(["alice"], FanoutNode.Frame("after"));
        await WaitUntilAsync(() => alice.Labels.Contains("after"), "nothing arrived after the publisher was back");
        await Task.Delay(300, TestContext.Current.CancellationToken);

        // Held in order, before what was published after; the typing indicator would be stale by now and is not. (A
        // "before" still on its way at the cut may come again: it is held like the others.)
        Assert.Equal(["during-1", "during-2", "during-3", "after"], alice.Labels.Where(l => l != "before"));
    }

    [Fact]
    public async Task PublicationRefusedWhileRedisIsBusy_IsHeldAndArrivesWhenRedisAnswersAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var redis = await RedisServer.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString + ",allowAdmin=true");
        await using var blocker = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        await using var receiver = await FanoutNode.RedisAsync(redis.ConnectionString);
        var alice = await receiver.ConnectAsync("alice");
        await PublishUntilDeliveredAsync(publisher, alice, "nothing reached alice before Redis was busy");

        // A long script (a failover's READONLY or a restart's LOADING alike): the connections stay up, commands are refused.
        await admin.GetDatabase().ExecuteAsync("CONFIG", "SET", "lua-time-limit", "50");
        var busy = blocker.GetDatabase().ScriptEvaluateAsync("while true do end");
        await Task.Delay(300, ct);
        await publisher.PublishAsync(["alice"], FanoutNode.Frame("while-busy"));
        await Task.Delay(500, ct);
        await admin.GetDatabase().ExecuteAsync("SCRIPT", "KILL");
        await Assert.ThrowsAnyAsync<RedisException>(() => busy);

        await WaitUntilAsync(() => alice.Labels.Contains("while-busy"), "the publication Redis refused while busy was dropped");
    }

    [Fact]
    public async Task Typing_WhileRedisIsUnreachable_StopsAreAnnounced_AndWhatStartedMeanwhileEndsOnceWhenRedisIsBack()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var link = new TcpRelay(new Uri($"tcp://{redis.ConnectionString}"));
        await using var node = await FanoutNode.RedisAsync($"127.0.0.1:{link.Address.Port},connectTimeout=1000,connectRetry=1");
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reach Redis");
        var conversation = Guid.CreateVersion7();
        var timeout = TimeSpan.FromSeconds(30);
        Assert.True(await node.Fanout.StartTypingAsync(conversation, "bob", timeout, CancellationToken.None)); // in Redis

        link.Pause();
        link.DropAll();
        await WaitUntilAsync(() => !node.Redis.IsConnected, "the instance never noticed it was cut off");
        Assert.True(await node.Fanout.StopTypingAsync(conversation, "bob", seenHere: true)); // Redis cannot say: announced
        Assert.False(await node.Fanout.StopTypingAsync(conversation, "carol", seenHere: false)); // unknown here: silent
        Assert.True(await node.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None)); // this instance's view
        Assert.False(await node.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None));
        link.Resume();
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reconnect");

        // Redis never heard of it, yet it was announced: its end is announced too, once.
        Assert.True(await node.Fanout.StopTypingAsync(conversation, "alice", seenHere: false));
        Assert.False(await node.Fanout.StopTypingAsync(conversation, "alice", seenHere: false));
        Assert.Equal(TypingCheck.Gone, await node.Fanout.CheckTypingAsync(conversation, "alice"));
    }

    [Fact]
    public async Task InstanceCutOffFromRedis_ItsSocketsGetTheReceiptsThatMovedMeanwhileFromTheStore()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var link = new TcpRelay(new Uri($"tcp://{redis.ConnectionString}"));
        var filler = new WatermarkFiller();
        await using var node = await FanoutNode.RedisAsync($"127.0.0.1:{link.Address.Port},connectTimeout=1000,connectRetry=1", filler);
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reach Redis");
        await Task.Delay(300, TestContext.Current.CancellationToken); // a repair for a slow first connect, if any, is done
        filler.Requests.Clear();
        var alice = await node.ConnectAsync("alice");
        var bob = await node.ConnectAsync("bob");
        Assert.Empty(filler.Requests); // nothing to repair while nothing was missed

        var cut = DateTimeOffset.UtcNow;
        link.Pause();
        link.DropAll();
        await WaitUntilAsync(() => !node.Redis.IsConnected, "the instance never noticed it was cut off");
        link.Resume();

        // Every local user's watermarks since the cut, read from the store and sent to their sockets.
        await alice.WaitForAsync(1);
        await bob.WaitForAsync(1);
        Assert.All(alice.Labels, l => Assert.Equal("receipt-alice", l));
        Assert.All(bob.Labels, l => Assert.Equal("receipt-bob", l));
        Assert.Equal(["alice", "bob"], filler.Requests.Select(r => r.UserId).Distinct().Order(StringComparer.Ordinal));

        // From when Redis last answered (the connect, or a liveness beat every second here), not from the cut's detection.
        Assert.All(filler.Requests, r => Assert.InRange(r.Since, cut.AddSeconds(-3), DateTimeOffset.UtcNow));
    }

    [Fact]
    public async Task InstanceCutOffFromRedis_TheLastEventsCommittedMeanwhileAreReadBack_AndCursorsChecked()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var link = new TcpRelay(new Uri($"tcp://{redis.ConnectionString}"));
        var conversation = Guid.CreateVersion7();
        var filler = new WatermarkFiller { LastSeqs = new Dictionary<Guid, long> { [conversation] = 1 } };
        await using var node = await FanoutNode.RedisAsync($"127.0.0.1:{link.Address.Port},connectTimeout=1000,connectRetry=1", filler);
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reach Redis");
        await Task.Delay(300, TestContext.Current.CancellationToken);
        var alice = await node.ConnectAsync("alice"); // primes the conversation: seq 2 expected next
        var rechecks = filler.Rechecks;

        link.Pause();
        link.DropAll();
        await WaitUntilAsync(() => !node.Redis.IsConnected, "the instance never noticed it was cut off");
        filler.LastSeqs = new Dictionary<Guid, long> { [conversation] = 3 }; // committed elsewhere; their publications lost
        link.Resume();

        // No later event would reveal them as missing: the repair reads them back.
        await WaitUntilAsync(() => alice.Labels.Contains("s3"), "the events committed meanwhile never arrived");
        Assert.Equal(["s2", "s3"], alice.Labels.Where(l => l.StartsWith('s')));
        Assert.True(filler.Rechecks > rechecks);
    }

    [Fact]
    public async Task RouteRefusedByRedisWhileConnected_TheNextLivenessBeatRegistersItAgain()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        await AddRedisUserAsync(db);
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        await using var node = await FanoutNode.RedisAsync($"{redis.ConnectionString},{RedisUser}");

        // Redis answers the route's script with an error (here NOPERM; OOM or READONLY alike) while the connection stays up.
        await db.ExecuteAsync("ACL", "SETUSER", "parley", "-@scripting");
        var alice = await node.ConnectAsync("alice");
        await WaitUntilAsync(() => node.Redis.RoutesPending == 1, "the refused route was not remembered");
        await db.ExecuteAsync("ACL", "SETUSER", "parley", "+@scripting");

        await PublishUntilDeliveredAsync(publisher, alice, "alice's route was never registered again: she gets nothing from other instances");
        await WaitUntilAsync(() => node.Redis.RoutesPending == 0, "the route is registered but still counted as pending");
    }

    [Fact]
    public async Task SubscriptionRefusedByRedis_ReadinessIsDegradedUntilTheChannelIsSubscribed()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        await AddRedisUserAsync(db);
        // Commands pass, but Redis refuses this instance's SUBSCRIBE (no channel rights): nothing published for its
        // sockets would arrive, while the command connection is up.
        await db.ExecuteAsync("ACL", "SETUSER", "parley", "resetchannels");
        await using var node = await FanoutNode.RedisAsync($"{redis.ConnectionString},{RedisUser}");

        Assert.True(node.Redis.IsConnected);
        Assert.False(node.Redis.IsSubscribed);
        Assert.Equal(HealthStatus.Degraded, FanoutSetup.Readiness(node.Redis).Status);

        await db.ExecuteAsync("ACL", "SETUSER", "parley", "allchannels");
        await WaitUntilAsync(() => node.Redis.IsSubscribed, "the channel was not subscribed at a later liveness beat");
        Assert.Equal(HealthStatus.Healthy, FanoutSetup.Readiness(node.Redis).Status);
    }

    [Fact(Timeout = 60_000)]
    public async Task LeftWhileCutOff_RedisRefusesTheRouteRemovalWhenItIsBack_ItIsSentAgainUntilTaken()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var redis = await RedisServer.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        await AddRedisUserAsync(db);
        await using var link = new TcpRelay(new Uri($"tcp://{redis.ConnectionString}"));
        await using var node = await FanoutNode.RedisAsync($"127.0.0.1:{link.Address.Port},{RedisUser},connectTimeout=1000,connectRetry=1");
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reach Redis");
        var alice = await node.ConnectAsync("alice");
        Assert.Contains((RedisValue)node.Redis.InstanceId, await db.SetMembersAsync("parley:route:alice"));

        link.Pause();
        link.DropAll();
        await WaitUntilAsync(() => !node.Redis.IsConnected, "the instance never noticed it was cut off");
        await alice.DisconnectAsync(); // left while cut off: the route is removed when Redis is back
        await db.ExecuteAsync("ACL", "SETUSER", "parley", "-@scripting"); // ...and then Redis refuses the removal
        link.Resume();
        await WaitUntilAsync(() => node.Redis.IsConnected, "the instance did not reconnect");
        await Task.Delay(1500, ct); // the reconnect's registration and a liveness beat (a second here) were refused
        Assert.Contains((RedisValue)node.Redis.InstanceId, await db.SetMembersAsync("parley:route:alice"));

        await db.ExecuteAsync("ACL", "SETUSER", "parley", "+@scripting");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await db.SetMembersAsync("parley:route:alice")).Contains(node.Redis.InstanceId))
        {
            Assert.True(DateTime.UtcNow < deadline, "alice left but her route stays: she is online for good");
            await Task.Delay(100, ct);
        }

        Assert.False((await node.Fanout.GetPresenceAsync(["alice"], ct))["alice"].Online);
    }

    [Fact]
    public async Task RedisUnreachableWhenTheInstanceStarts_ItStartsAndJoinsOnceRedisIsUp()
    {
        await using var redis = await RedisServer.StartAsync();
        await redis.StopAsync();
        await using var late = await FanoutNode.RedisAsync($"{redis.ConnectionString},connectTimeout=1000,connectRetry=1");
        Assert.False(late.Redis.IsConnected);
        var alice = await late.ConnectAsync("alice"); // a socket while Redis is away: local delivery only

        await redis.StartAgainAsync();
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        await WaitUntilAsync(() => late.Redis.IsConnected, "the instance never reached Redis");
        // Its channel is subscribed and alice's route registered once Redis is reached (reconnect or liveness beat).
        await PublishUntilDeliveredAsync(publisher, alice, "events from another instance never reached the instance that started without Redis");
    }

    [Fact]
    public async Task StoppedAgainAfterItWasDisposed_TheStopIsANoOp()
    {
        // A test host with Kestrel may stop its services once more after the container disposed them.
        await using var redis = await RedisServer.StartAsync();
        var node = await FanoutNode.RedisAsync(redis.ConnectionString);
        await node.DisposeAsync();

        await node.Redis.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Subscribe_ReturnsTheLastSeqsItReadToPrimeTheGate_SoTheSocketDoesNotReadThemAgain()
    {
        await using var redis = await RedisServer.StartAsync();
        var conversation = Guid.CreateVersion7();
        var filler = new WatermarkFiller { LastSeqs = new Dictionary<Guid, long> { [conversation] = 7 } };
        await using var node = await FanoutNode.RedisAsync(redis.ConnectionString, filler);

        var subscription = await node.Fanout.SubscribeAsync("alice", TestContext.Current.CancellationToken);

        Assert.True(subscription.CameOnline);
        Assert.Equal(7, subscription.LastSeqs![conversation]);
        Assert.Equal(1, filler.LastSeqReads);
        await node.Fanout.UnsubscribeAsync("alice");
    }

    [Fact]
    public async Task Subscribe_ASecondSocketWhileTheFirstIsStillRouting_ReturnsOnlyOnceTheRouteIsRegistered()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var node = await FanoutNode.RedisAsync(redis.ConnectionString, configure: o => o.SubscribeTimeout = TimeSpan.FromSeconds(20));
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString + ",allowAdmin=true");
        var db = admin.GetDatabase();
        var ct = TestContext.Current.CancellationToken;

        // Writes (the route's script among them) wait while Redis is paused: the first socket's route is on its way.
        await db.ExecuteAsync("CLIENT", "PAUSE", "1500", "WRITE");
        var first = node.Fanout.SubscribeAsync("alice", ct).AsTask();
        await Task.Delay(200, ct);
        var second = await node.Fanout.SubscribeAsync("alice", ct);

        // The second socket reads its baseline only once events for alice reach this instance.
        Assert.Contains((RedisValue)node.Redis.InstanceId, await db.SetMembersAsync("parley:route:alice"));
        Assert.False(second.CameOnline);
        Assert.True((await first).CameOnline);
        await node.Fanout.UnsubscribeAsync("alice");
        await node.Fanout.UnsubscribeAsync("alice");
    }

    private static Realtime.OutboundFrame Typing(string label) =>
        new(System.Text.Encoding.UTF8.GetBytes($$$"""{"type":"typing","payload":{"label":"{{{label}}}"}}"""), Protocol.FrameTypes.Typing, null, 0);

    /// <summary>The connection-string part of a Redis user whose rights a test can take away (<see cref="AddRedisUserAsync"/>).</summary>
    private const string RedisUser = "user=parley,password=parley-test";

    /// <summary>Creates <see cref="RedisUser"/> with every right: a test revokes some to have Redis refuse commands of one instance.</summary>
    private static Task AddRedisUserAsync(IDatabase admin) =>
        admin.ExecuteAsync("ACL", "SETUSER", "parley", "on", ">parley-test", "~*", "&*", "+@all");

    /// <summary>Publishes a frame for alice every 200 ms until her device got one (at most 20 s).</summary>
    private static async Task PublishUntilDeliveredAsync(FanoutNode publisher, FanoutNode.Device alice, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        var sent = 0;
        while (alice.Socket.Sent.Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await publisher.PublishAsync(["alice"], FanoutNode.Frame($"after-{sent++}"));
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>A store with one moved watermark per user: a receipt frame labelled with the user.</summary>
    private sealed class WatermarkFiller : IGapFiller
    {
        public System.Collections.Concurrent.ConcurrentQueue<(string UserId, DateTimeOffset Since)> Requests { get; } = new();

        public Task<IReadOnlyList<FanoutPart>> ReadGapAsync(
            Guid conversationId, long afterSeq, long uptoSeq, IReadOnlyCollection<string> userIds, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<FanoutPart>>([.. Enumerable.Range((int)afterSeq + 1, (int)(uptoSeq - afterSeq))
                .Select(s => new FanoutPart([.. userIds], FanoutNode.Frame($"s{s}", conversationId, s)))]);

        public IReadOnlyDictionary<Guid, long> LastSeqs { get; set; } = new Dictionary<Guid, long>();

        public int Rechecks => _rechecks;

        private int _rechecks;

        public void RecheckCursors() => Interlocked.Increment(ref _rechecks);

        public int LastSeqReads => _lastSeqReads;

        private int _lastSeqReads;

        /// <summary>When set, the repair's reads wait for it (after saying so through <see cref="Held"/>): a slow store.</summary>
        public Task? Hold { get; set; }

        public TaskCompletionSource Held { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<IReadOnlyDictionary<Guid, long>> ReadLastSeqsAsync(string userId, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _lastSeqReads);
            return Task.FromResult(LastSeqs);
        }

        public async Task<IReadOnlyList<Realtime.OutboundFrame>> ReadWatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken)
        {
            Requests.Enqueue((userId, since));
            if (Hold is { } hold)
            {
                Held.TrySetResult();
                await hold.WaitAsync(cancellationToken);
            }

            return [FanoutNode.Frame($"receipt-{userId}")];
        }
    }
}

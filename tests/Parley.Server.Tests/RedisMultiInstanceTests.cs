using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Two Parley servers on one PostgreSQL database and one Redis (Fanout:Provider=Redis): every live event reaches
/// devices on the other instance at once, devices without cursors included, in each conversation's seq order, and a
/// Redis restart loses nothing. The cursor check runs rarely here, so what arrives in time arrived live.
/// </summary>
[Trait("Store", "Independent")]
public sealed class RedisMultiInstanceTests : RedisPairTests
{
    private static readonly TimeSpan Live = TimeSpan.FromSeconds(3);

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Fanout:Redis:InstanceTtl"] = "00:00:03";
        settings["Delivery:CursorInterval"] = "00:00:30";
        settings["Presence:MinInterval"] = "00:00:00";
    }

    [Fact]
    public async Task DeviceWithoutCursorOnTheOtherInstance_GetsMessagesEditsDeletesReceiptsAndTypingLive()
    {
        using var alice = First.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(Second, "bob");
        await using var aliceSocket = await WsClient.ConnectAsync(First, "alice");

        var first = await alice.SendTextAsync(conversation.Id, "hello across");
        var got = await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == first.Id, Live);
        Assert.Equal("hello across", got.GetProperty("message").GetProperty("content").GetString());

        Assert.Equal(HttpStatusCode.OK, (await alice.PutAsync($"/api/v1/messages/{first.Id}", new { content = "edited" })).StatusCode);
        await bob.NextAsync("message_edited", p => p.GetProperty("message").GetProperty("id").GetGuid() == first.Id, Live);

        await aliceSocket.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });
        await bob.NextAsync("typing", p => p.GetProperty("user_id").GetString() == "alice", Live);

        using var bobRest = Second.Api("bob");
        await bobRest.MarkReadAsync(first.Id);
        await aliceSocket.NextAsync("message_read", p => p.GetProperty("user_id").GetString() == "bob", Live);

        Assert.Equal(HttpStatusCode.OK, (await alice.DeleteAsync($"/api/v1/messages/{first.Id}")).StatusCode);
        await bob.NextAsync("message_deleted", p => p.GetProperty("message_id").GetGuid() == first.Id, Live);
    }

    [Fact]
    public async Task ConcurrentSendersOnBothInstances_EverySocketSeesTheConversationInSeqOrderOnce()
    {
        using var owner = First.Api("alice");
        string[] members = ["alice", "bob", "carol", "dave"];
        var group = await owner.CreateGroupAsync("both sides", "bob", "carol", "dave");
        var watchers = new List<WsClient>();
        foreach (var (user, index) in members.Select((u, i) => (u, i)))
        {
            watchers.Add(await WsClient.ConnectAsync(index % 2 == 0 ? First : Second, user));
            watchers.Add(await WsClient.ConnectAsync(index % 2 == 0 ? Second : First, user)); // each user on both instances
        }

        const int PerSender = 15;
        var apis = members.SelectMany(u => new[] { First.Api(u), Second.Api(u) }).ToList();
        var sent = await Task.WhenAll(apis.SelectMany((api, i) => Enumerable.Range(0, PerSender).Select(n => Task.Run(
            () => api.SendTextAsync(group.Id, $"{i}-{n}"), CancellationToken.None))));
        var expected = sent.Select(m => m.Seq).Order().ToList();

        try
        {
            foreach (var watcher in watchers)
            {
                await watcher.NextAsync("new_message", p => p.GetProperty("message").GetProperty("seq").GetInt64() == expected[^1], TimeSpan.FromSeconds(10));
                var seqs = watcher.All().Where(f => f.GetProperty("type").GetString() == "new_message")
                    .Select(f => f.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64()).ToList();
                Assert.Equal(expected, seqs); // all of them, once each, in seq order
            }
        }
        finally
        {
            foreach (var watcher in watchers)
            {
                await watcher.DisposeAsync();
            }

            foreach (var api in apis)
            {
                api.Dispose();
            }
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task RedisRestartedMidConversation_NothingLostAndLiveDeliveryComesBack()
    {
        using var alice = First.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(Second, "bob", "acks=true");
        await bob.PingAsync();
        var before = await alice.SendTextAsync(conversation.Id, "before");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("seq").GetInt64() == before.Seq, Live);

        await Redis!.StopAsync();
        using var probe = First.Anonymous();
        await WaitUntilAsync(async () => (await ReadinessAsync(probe)).Fanout == "Degraded");
        var ready = await probe.GetAsync("/ready", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode); // degraded, not failed: REST goes on
        var during = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            during.Add((await alice.SendTextAsync(conversation.Id, $"during {i}")).Seq);
        }

        await Redis.StartAgainAsync();
        await WaitUntilAsync(async () => (await ReadinessAsync(probe)).Fanout == "Healthy");
        using var secondProbe = Second.Anonymous();
        await WaitUntilAsync(async () => (await ReadinessAsync(secondProbe)).Fanout == "Healthy");
        await Task.Delay(500, TestContext.Current.CancellationToken); // routes registered again after the reconnect

        var after = await alice.SendTextAsync(conversation.Id, "after");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("seq").GetInt64() == after.Seq, Live);

        // What was sent while Redis was down reaches the device through its cursor (the cursor check or a resume).
        var missing = during.Where(seq => !bob.All().Any(f => IsMessage(f, seq))).ToList();
        await using var resumed = await WsClient.ConnectAsync(Second, "bob", "cursor=" + Uri.EscapeDataString(bob.Connected.GetProperty("cursor").GetString()!));
        foreach (var seq in missing)
        {
            await resumed.NextAsync("new_message", p => p.GetProperty("message").GetProperty("seq").GetInt64() == seq, TimeSpan.FromSeconds(10));
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task ReceiptMovedWhileRedisWasDown_ReachesTheSenderOnTheOtherInstanceWhenItIsBack_WithoutAReconnect()
    {
        using var alice = First.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var aliceSocket = await WsClient.ConnectAsync(First, "alice");
        await aliceSocket.PingAsync();
        var message = await alice.SendTextAsync(conversation.Id, "read me later");

        await Redis!.StopAsync();
        using var probe = First.Anonymous();
        await WaitUntilAsync(async () => (await ReadinessAsync(probe)).Fanout == "Degraded");
        using var bob = Second.Api("bob");
        await bob.MarkReadAsync(message.Id); // on the other instance, which cannot carry it now
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.DoesNotContain(aliceSocket.All(), f => f.GetProperty("type").GetString() == "message_read");

        await Redis.StartAgainAsync();

        // The same socket, no reconnect, no cursor: the read receipt arrives once Redis is back.
        var read = await aliceSocket.NextAsync("message_read", p => p.GetProperty("user_id").GetString() == "bob", TimeSpan.FromSeconds(20));
        Assert.Equal(message.Id, read.GetProperty("message_id").GetGuid());
    }

    [Fact(Timeout = 120_000)]
    public async Task UserWhoLeftWhileRedisWasDown_IsLastSeenWhenTheyLeft_NotWhenRedisCameBack()
    {
        await First.Api("alice").CreateDirectAsync("bob");
        using var bobApi = Second.Api("bob");
        var aliceSocket = await WsClient.ConnectAsync(First, "alice");
        Assert.True(await OnlineAsync(bobApi));

        await Redis!.StopAsync();
        using var probe = First.Anonymous();
        await WaitUntilAsync(async () => (await ReadinessAsync(probe)).Fanout == "Degraded");
        var left = DateTimeOffset.UtcNow;
        await aliceSocket.DisposeAsync();
        await Task.Delay(3_000, TestContext.Current.CancellationToken);
        await Redis.StartAgainAsync();

        // Until Redis answers again, the other instance knows only its own sockets (offline, no last-seen time).
        JsonElement presence = default;
        await WaitUntilAsync(async () =>
        {
            presence = await ParleyApi.ReadAsync<JsonElement>(await bobApi.GetAsync("/api/v1/users/alice/presence"));
            return !presence.GetProperty("online").GetBoolean() && presence.GetProperty("last_seen_at").ValueKind == JsonValueKind.String;
        });
        var seen = presence.GetProperty("last_seen_at").GetDateTimeOffset();
        Assert.InRange(seen, left.AddSeconds(-1), left.AddSeconds(2.5)); // Redis came back 3 s after she left
    }

    [Fact]
    public async Task Presence_DevicesOnBothInstances_OnlineUntilTheLastOneAnywhereLeaves()
    {
        await First.Api("alice").CreateDirectAsync("bob");
        using var bobOnSecond = Second.Api("bob");
        await using var bob = await WsClient.ConnectAsync(Second, "bob");

        var phone = await WsClient.ConnectAsync(First, "alice", deviceId: "phone");
        Assert.True((await bob.NextAsync("presence", p => p.GetProperty("user_id").GetString() == "alice", Live)).GetProperty("online").GetBoolean());
        var laptop = await WsClient.ConnectAsync(Second, "alice", deviceId: "laptop");
        Assert.True(await OnlineAsync(bobOnSecond));

        await phone.DisposeAsync();
        await bob.AssertNoFrameAsync("presence", TimeSpan.FromSeconds(1)); // the laptop is still connected, elsewhere
        Assert.True(await OnlineAsync(bobOnSecond));

        await laptop.DisposeAsync();
        var offline = await bob.NextAsync("presence", p => p.GetProperty("user_id").GetString() == "alice", TimeSpan.FromSeconds(15));
        Assert.False(offline.GetProperty("online").GetBoolean());
        using var bobOnFirst = First.Api("bob");
        Assert.False(await OnlineAsync(bobOnFirst));
        var body = await ParleyApi.ReadAsync<JsonElement>(await bobOnFirst.GetAsync("/api/v1/users/alice/presence"));
        Assert.Equal(JsonValueKind.String, body.GetProperty("last_seen_at").ValueKind);
    }

    private static async Task<bool> OnlineAsync(ParleyApi api) =>
        (await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync("/api/v1/users/alice/presence"))).GetProperty("online").GetBoolean();

    private static bool IsMessage(JsonElement frame, long seq) =>
        frame.GetProperty("type").GetString() == "new_message" && frame.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64() == seq;

    private static async Task<(string Status, string? Fanout)> ReadinessAsync(HttpClient client)
    {
        using var response = await client.GetAsync("/ready", TestContext.Current.CancellationToken);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        var fanout = json.RootElement.GetProperty("checks").EnumerateArray()
            .FirstOrDefault(c => c.GetProperty("name").GetString() == "fanout");
        return (json.RootElement.GetProperty("status").GetString()!, fanout.ValueKind == JsonValueKind.Undefined ? null : fanout.GetProperty("status").GetString());
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }
}

/// <summary>
/// Presence across two instances with an announcement interval: each instance paces its own announcements, and what
/// goes out is the state the fan-out holds, not what one instance saw. And typing of an instance that stops.
/// </summary>
[Trait("Store", "Independent")]
public sealed class RedisPresenceIntervalTests : RedisPairTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(3);

    protected override void Configure(Dictionary<string, string?> settings) => settings["Presence:MinInterval"] = "00:00:03";

    protected override void ConfigureServices(int instance, IServiceCollection services)
    {
        if (instance == 0)
        {
            FailingStore.Install(services);
        }
    }

    [Fact]
    public async Task ReconnectThroughTheOtherInstance_WithinTheInterval_IsNotAnnouncedOffline()
    {
        // The first instance deferred "offline" when the page was reloaded, and sent it at the interval's end while the
        // user was connected to the second: contacts saw an online user offline until the next change.
        var (first, second) = (First, Second);
        await first.Api("alice").CreateDirectAsync("bob");
        using var bobApi = second.Api("bob");
        await using var bob = await WsClient.ConnectAsync(second, "bob");
        var page = await WsClient.ConnectAsync(first, "alice");
        Assert.True((await bob.NextAsync("presence", IsAlice, TimeSpan.FromSeconds(5))).GetProperty("online").GetBoolean());

        await page.DisposeAsync();
        await using var reloaded = await WsClient.ConnectAsync(second, "alice");

        await bob.AssertNoFrameAsync("presence", Interval * 2, p => IsAlice(p) && !p.GetProperty("online").GetBoolean());
        Assert.True((await ParleyApi.ReadAsync<JsonElement>(await bobApi.GetAsync("/api/v1/users/alice/presence"))).GetProperty("online").GetBoolean());

        // Leaving for good is still announced, once, with when she left.
        await reloaded.DisposeAsync();
        var offline = await bob.NextAsync("presence", p => IsAlice(p) && !p.GetProperty("online").GetBoolean(), Interval * 4);
        Assert.Equal(JsonValueKind.String, offline.GetProperty("last_seen_at").ValueKind);
    }

    [Fact]
    public async Task InstanceThatStops_EndsItsTypersIndicators_AndAnnouncesWhoLeftWithIt()
    {
        // "true" goes out once and only the instance holding the indicator says "false": one that stopped left its
        // typers shown as typing on every other instance for good.
        var (first, second) = (First, Second);
        var conversation = await first.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(second, "bob");
        await using var alice = await WsClient.ConnectAsync(first, "alice");
        await alice.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });
        Assert.True((await bob.NextAsync("typing", p => p.GetProperty("user_id").GetString() == "alice", TimeSpan.FromSeconds(5))).GetProperty("is_typing").GetBoolean());

        await first.DisposeAsync();

        // Within the shutdown (sockets closed first, then the services above the fan-out stop), far less than forever.
        var ended = await bob.NextAsync("typing", p => p.GetProperty("user_id").GetString() == "alice", TimeSpan.FromSeconds(20));
        Assert.False(ended.GetProperty("is_typing").GetBoolean());
        // And alice, whose only socket closed with the instance, is announced offline: the announcement was handed to
        // the fan-out before it stopped (it used to be dropped as the fan-out's queue closed).
        var offline = await bob.NextAsync("presence", p => IsAlice(p) && !p.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(20));
        Assert.Equal(JsonValueKind.String, offline.GetProperty("last_seen_at").ValueKind);
    }

    [Fact]
    public async Task InstanceThatStops_WhileAnOfflineAnnouncementReadsItsRecipients_StillSendsIt()
    {
        // The announcement reads the user's contacts, then hands the frames to the fan-out: a stop that did not wait for
        // it closed the fan-out's queue first, and the user stayed online for their contacts.
        var (first, second) = (First, Second);
        var store = first.Services.GetRequiredService<FailingStore>();
        await first.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(second, "bob");
        await using var alice = await WsClient.ConnectAsync(first, "alice");
        await bob.NextAsync("presence", p => IsAlice(p) && p.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(5));
        store.Method = nameof(Parley.Server.Storage.IChatStore.ListContactsAsync);
        store.Delay = TimeSpan.FromSeconds(2);
        store.Failing = true;

        await first.DisposeAsync();

        await bob.NextAsync("presence", p => IsAlice(p) && !p.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(20));
    }

    private static bool IsAlice(JsonElement presence) => presence.GetProperty("user_id").GetString() == "alice";
}

/// <summary>Two instances whose presence announcements wait a minute between changes of a user.</summary>
[Trait("Store", "Independent")]
public sealed class RedisPresenceLongIntervalTests : RedisPairTests
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Presence:MinInterval"] = "00:01:00";

    [Fact]
    public async Task InstanceThatStops_AnnouncesAnOfflineThatWaitedOutItsInterval()
    {
        // Alice came online moments before the instance stopped: her "offline" waited out the interval on a timer that
        // went with the instance, and she stayed online for her contacts.
        var (first, second) = (First, Second);
        await first.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(second, "bob");
        await using var alice = await WsClient.ConnectAsync(first, "alice");
        await bob.NextAsync("presence", p => p.GetProperty("user_id").GetString() == "alice" && p.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(5));

        await first.DisposeAsync();

        var offline = await bob.NextAsync(
            "presence", p => p.GetProperty("user_id").GetString() == "alice" && !p.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(20));
        Assert.Equal(JsonValueKind.String, offline.GetProperty("last_seen_at").ValueKind);
    }
}

/// <summary>
/// Two Parley servers on one PostgreSQL database and one Redis (Fanout:Provider=Redis), started for each test with the
/// settings of <see cref="Configure"/>; skipped without a PostgreSQL administrator.
/// </summary>
public abstract class RedisPairTests : IAsyncLifetime
{
    private protected RedisServer? Redis { get; private set; }

    private protected TwoInstances? Instances { get; private set; }

    private protected ParleyFactory First => Instances!.First;

    private protected ParleyFactory Second => Instances!.Second;

    public async ValueTask InitializeAsync()
    {
        // Skipped before Redis starts: a skip in InitializeAsync is not followed by DisposeAsync.
        TestPostgres.RequireAdmin();
        Redis = await RedisServer.StartAsync();
        var redis = Redis.ConnectionString;
        Instances = new TwoInstances(
            (_, s) =>
            {
                s["Fanout:Provider"] = "Redis";
                s["ConnectionStrings:Redis"] = redis + ",connectRetry=1,connectTimeout=2000";
                s["Presence:Events"] = "true";
                Configure(s);
            },
            kestrel: true,
            services: ConfigureServices);
    }

    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return RedisServer.DisposeAfterAsync(Instances, Redis);
    }

    protected abstract void Configure(Dictionary<string, string?> settings);

    protected virtual void ConfigureServices(int instance, IServiceCollection services)
    {
    }
}

/// <summary>
/// Typing through several instances (no sticky sessions): a user's refreshes, stop and messages may each reach another
/// instance than the start, and the others still see one start and one end.
/// </summary>
[Trait("Store", "Independent")]
public sealed class RedisTypingTests : RedisPairTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(1);

    protected override void Configure(Dictionary<string, string?> settings) => settings["Realtime:TypingTimeout"] = "00:00:01";

    [Fact]
    public async Task RefreshedAndStoppedThroughTheOtherInstance_OneStartAndOneEnd()
    {
        var conversation = await First.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(First, "bob");
        using var aliceFirst = First.Api("alice");
        using var aliceSecond = Second.Api("alice");

        await TypingAsync(aliceFirst, conversation.Id, true);
        Assert.True((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        // Refreshed only through the other instance, for well past the timeout the first instance knows.
        for (var i = 0; i < 8; i++)
        {
            await Task.Delay(Timeout / 3, TestContext.Current.CancellationToken);
            await TypingAsync(aliceSecond, conversation.Id, true);
        }

        await TypingAsync(aliceSecond, conversation.Id, false);
        Assert.False((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        await AssertOneStartAndOneEndAsync(bob);
    }

    [Fact]
    public async Task MessageSentThroughTheOtherInstance_EndsTheIndicator()
    {
        var conversation = await First.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(Second, "bob");
        using var aliceFirst = First.Api("alice");
        await TypingAsync(aliceFirst, conversation.Id, true);
        Assert.True((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());

        using var aliceSecond = Second.Api("alice");
        var sent = await aliceSecond.SendTextAsync(conversation.Id, "done typing");

        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == sent.Id);
        Assert.False((await bob.NextAsync("typing", timeout: Timeout / 2)).GetProperty("is_typing").GetBoolean()); // not its expiry
        await AssertOneStartAndOneEndAsync(bob);
    }

    [Fact]
    public async Task SeenByBothInstances_ExpiresOnce()
    {
        var conversation = await First.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(First, "bob");
        using var aliceFirst = First.Api("alice");
        using var aliceSecond = Second.Api("alice");
        await TypingAsync(aliceFirst, conversation.Id, true);
        await TypingAsync(aliceSecond, conversation.Id, true);

        Assert.True((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        Assert.False((await bob.NextAsync("typing", timeout: 4 * Timeout)).GetProperty("is_typing").GetBoolean());
        await AssertOneStartAndOneEndAsync(bob);
    }

    private static async Task TypingAsync(ParleyApi api, Guid conversationId, bool isTyping)
    {
        using var response = await api.PostAsync($"/api/v1/conversations/{conversationId}/typing", new { is_typing = isTyping });
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
    }

    /// <summary>Nothing more comes, well past another timeout, and all the client got was one start and one end.</summary>
    private static async Task AssertOneStartAndOneEndAsync(WsClient client)
    {
        await client.AssertNoFrameAsync("typing", 3 * Timeout);
        var frames = client.All().Where(f => f.GetProperty("type").GetString() == "typing").Select(f => f.GetProperty("payload").GetProperty("is_typing").GetBoolean());
        Assert.Equal([true, false], frames);
    }
}

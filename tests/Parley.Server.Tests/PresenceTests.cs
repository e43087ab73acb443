using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Presence on one instance: online while any device is connected, last seen when the last one left; looked up only by
/// users who share a conversation; announced to members of small conversations, at most once per interval per user.
/// Across instances: <see cref="RedisMultiInstanceTests"/>.
/// </summary>
public sealed class PresenceTests : IAsyncLifetime
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(600);
    private readonly ParleyFactory _factory = new(s =>
    {
        s["Presence:Events"] = "true";
        s["Presence:MinInterval"] = "00:00:00.600";
        s["Presence:MaxConversationSize"] = "3";
    });

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Lookup_FollowsTheUsersDevices_OnlineWhileAnyIsConnectedThenLastSeen()
    {
        using var bob = _factory.Api("bob");
        await _factory.Api("alice").CreateDirectAsync("bob");
        var never = await PresenceAsync(bob, "alice");
        Assert.Equal(("alice", false, (DateTimeOffset?)null), never);

        var phone = await WsClient.ConnectAsync(_factory, "alice", deviceId: "phone");
        var laptop = await WsClient.ConnectAsync(_factory, "alice", deviceId: "laptop");
        Assert.Equal(("alice", true, (DateTimeOffset?)null), await PresenceAsync(bob, "alice"));
        await phone.DisposeAsync();
        await WaitForAsync(bob, online: true); // the laptop is still there
        var before = DateTimeOffset.UtcNow;
        await laptop.DisposeAsync();

        var gone = await WaitForAsync(bob, online: false);
        Assert.NotNull(gone.LastSeenAt);
        Assert.InRange(gone.LastSeenAt!.Value, before.AddSeconds(-1), DateTimeOffset.UtcNow.AddSeconds(1));
    }

    [Fact]
    public async Task Lookup_OfAUserIdWithASlash_EncodedInThePath_FindsThatUser()
    {
        using var bob = _factory.Api("bob");
        await _factory.Api("org/alice").CreateDirectAsync("bob");

        using var response = await bob.GetAsync($"/api/v1/users/{Uri.EscapeDataString("org/alice")}/presence");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("org/alice", (await ParleyApi.ReadAsync<System.Text.Json.JsonElement>(response)).GetProperty("user_id").GetString());
    }

    [Fact]
    public async Task Lookup_OfSomeoneWhoSharesNoConversation_Is404LikeAnUnknownUser()
    {
        using var carol = _factory.Api("carol");
        await _factory.Api("alice").CreateDirectAsync("bob");
        await using var alice = await WsClient.ConnectAsync(_factory, "alice");

        await ParleyApi.ProblemAsync(await carol.GetAsync("/api/v1/users/alice/presence"), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await carol.GetAsync("/api/v1/users/nobody/presence"), HttpStatusCode.NotFound, "not_found");
        Assert.Equal(("carol", false, (DateTimeOffset?)null), await PresenceAsync(carol, "carol")); // one's own: allowed
        using var anonymous = _factory.Anonymous();
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/v1/users/alice/presence", TestContext.Current.CancellationToken)).StatusCode);
    }

    [Fact]
    public async Task Lookup_AfterLeavingTheOnlySharedConversation_Is404()
    {
        using var alice = _factory.Api("alice");
        using var bob = _factory.Api("bob");
        var group = await alice.CreateGroupAsync("g", "bob");
        Assert.False((await PresenceAsync(bob, "alice")).Online);

        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/bob")).StatusCode);

        await ParleyApi.ProblemAsync(await bob.GetAsync("/api/v1/users/alice/presence"), HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task Events_ComingOnlineAndGoingOffline_ReachMembersOfSmallConversationsOnly()
    {
        using var alice = _factory.Api("alice");
        await alice.CreateDirectAsync("bob");
        await alice.CreateGroupAsync("large", "dave", "erin", "frank"); // four members: above MaxConversationSize
        await using var bob = await WsClient.ConnectAsync(_factory, "bob");
        await using var dave = await WsClient.ConnectAsync(_factory, "dave");
        await using var carol = await WsClient.ConnectAsync(_factory, "carol"); // shares nothing with alice

        var phone = await WsClient.ConnectAsync(_factory, "alice");
        var online = await bob.NextAsync("presence");
        Assert.Equal(("alice", true, JsonValueKind.Null), (online.GetProperty("user_id").GetString(), online.GetProperty("online").GetBoolean(), online.GetProperty("last_seen_at").ValueKind));

        await Task.Delay(Interval, TestContext.Current.CancellationToken);
        await phone.DisposeAsync();
        var offline = await bob.NextAsync("presence");
        Assert.False(offline.GetProperty("online").GetBoolean());
        Assert.Equal(JsonValueKind.String, offline.GetProperty("last_seen_at").ValueKind);

        await dave.AssertNoFrameAsync("presence", WsClientAssertions.Silence);
        await carol.AssertNoFrameAsync("presence", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Events_AnAnnouncementWhoseContactsReadIsSlow_HoldsUpNoConnect()
    {
        await using var factory = new ParleyFactory(s => s["Presence:Events"] = "true", services: FailingStore.Install);
        factory.StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        await alice.CreateDirectAsync("bob");
        using var gate = new ManualResetEventSlim();
        store.Method = nameof(Parley.Server.Storage.IChatStore.ListContactsAsync);
        store.Gate = gate; // a read that completes synchronously, as SQLite's do, but only once released

        // Alice's announcement is stuck in its contacts read; neither her connect nor Carol's waits for it.
        await using var phone = await WsClient.ConnectAsync(factory, "alice");
        await using var carol = await WsClient.ConnectAsync(factory, "carol");
        await using var bob = await WsClient.ConnectAsync(factory, "bob");

        store.Gate = null;
        gate.Set();
        var online = await bob.NextAsync("presence", p => p.GetProperty("user_id").GetString() == "alice");
        Assert.True(online.GetProperty("online").GetBoolean());
    }

    [Fact]
    public async Task Events_AConnectionThatFlaps_AnnouncesOnceThenOnlyTheStateItEndsIn()
    {
        await _factory.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_factory, "bob");

        var first = await WsClient.ConnectAsync(_factory, "alice");
        Assert.True((await bob.NextAsync("presence")).GetProperty("online").GetBoolean());
        for (var i = 0; i < 3; i++)
        {
            await first.DisposeAsync();
            first = await WsClient.ConnectAsync(_factory, "alice");
        }

        // Within the interval: nothing; at its end alice is online again, as last announced: still nothing.
        await bob.AssertNoFrameAsync("presence", Interval * 2);
        await first.DisposeAsync();
        Assert.False((await bob.NextAsync("presence", timeout: TimeSpan.FromSeconds(5))).GetProperty("online").GetBoolean());
    }

    private static async Task<(string UserId, bool Online, DateTimeOffset? LastSeenAt)> PresenceAsync(ParleyApi api, string userId)
    {
        var body = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/users/{userId}/presence"));
        var seen = body.GetProperty("last_seen_at");
        return (body.GetProperty("user_id").GetString()!, body.GetProperty("online").GetBoolean(), seen.ValueKind == JsonValueKind.Null ? null : seen.GetDateTimeOffset());
    }

    private static async Task<(string UserId, bool Online, DateTimeOffset? LastSeenAt)> WaitForAsync(ParleyApi api, bool online)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var presence = await PresenceAsync(api, "alice");
            if (presence.Online == online)
            {
                return presence;
            }

            Assert.True(DateTime.UtcNow < deadline, "presence did not change");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }
}

/// <summary>Presence events switched off: the lookup still answers.</summary>
public sealed class PresenceEventsOffTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(s => s["Presence:Events"] = "false");

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task EventsOff_NoPresenceFramesButTheLookupAnswers()
    {
        using var bobApi = _factory.Api("bob");
        await _factory.Api("alice").CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_factory, "bob");

        await using var alice = await WsClient.ConnectAsync(_factory, "alice");

        await bob.AssertNoFrameAsync("presence", WsClientAssertions.Silence);
        var body = await ParleyApi.ReadAsync<JsonElement>(await bobApi.GetAsync("/api/v1/users/alice/presence"));
        Assert.True(body.GetProperty("online").GetBoolean());
    }
}

/// <summary>
/// The table of recent announcements (what rate-limits them per user) stays bounded: entries whose interval is over are
/// swept, at most once an interval, so a reconnect storm does not walk the whole table for every connect.
/// </summary>
public sealed class PresenceAnnouncementTableTests : IAsyncLifetime
{
    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public PresenceAnnouncementTableTests()
    {
        _factory = new ParleyFactory(
            s =>
            {
                s["Presence:Events"] = "true";
                s["Presence:MinInterval"] = "00:00:10";
            },
            _time);
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task ManyUsersComeOnline_TheTableKeepsThemForAnIntervalThenForgetsThem()
    {
        var presence = _factory.Services.GetRequiredService<Parley.Server.Presence.PresenceService>();
        var ct = TestContext.Current.CancellationToken;
        for (var i = 0; i < 1_100; i++)
        {
            await presence.ConnectedAsync($"storm-{i}", ct);
        }

        // Within the interval every user's announcement is kept: a second one would be deferred, not sent.
        Assert.Equal(1_100, presence.Tracked);

        _time.Advance(TimeSpan.FromSeconds(11));
        await presence.ConnectedAsync("late", ct);
        Assert.Equal(1, presence.Tracked);
    }
}

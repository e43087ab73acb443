using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Events;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// parley.notifications across instances (docs/events.md): "no device connected" means on no instance of the deployment.
/// Two servers on one PostgreSQL and one Redis; only the first publishes the stream, so a recipient connected only to
/// the second is known to the relay through presence alone.
/// </summary>
[Trait("Store", "Independent")]
public sealed class NotificationPresenceTests : IAsyncLifetime
{
    private readonly InMemoryEventSink _sink = new();
    private RedisServer? _redis;
    private TwoInstances? _instances;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        // Skipped before Redis starts: a skip in InitializeAsync is not followed by DisposeAsync.
        TestPostgres.RequireAdmin();
        _redis = await RedisServer.StartAsync();
        var redis = _redis.ConnectionString;
        _instances = new TwoInstances(
            (_, s) =>
            {
                s["Fanout:Provider"] = "Redis";
                s["ConnectionStrings:Redis"] = redis + ",connectRetry=1,connectTimeout=2000";
                s["Events:PollInterval"] = "00:00:00.010";
            },
            kestrel: true,
            services: (instance, services) =>
            {
                if (instance == 0)
                {
                    services.AddSingleton<IEventSink>(_sink);
                }
            });
    }

    public ValueTask DisposeAsync() => RedisServer.DisposeAfterAsync(_instances, _redis);

    [Fact]
    public async Task ARecipientConnectedOnlyToAnotherInstance_GetsNoNotification_UntilTheirLastDeviceLeaves()
    {
        var (aliceId, bobId, carolId) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        var alice = _instances!.First.BoundedApi(aliceId);
        var group = await alice.CreateGroupAsync("Across", bobId, carolId);
        var bobSocket = await WsClient.ConnectAsync(_instances.Second, bobId);
        await WaitForPresenceAsync(alice, bobId, online: true);

        var first = await alice.SendTextAsync(group.Id, "one");
        await _sink.WaitForAsync(r => r.Of(group.Id).Any(x => x.Type == "message.created"));
        // carol has no device anywhere (the relay does notify); bob's socket is on the other instance.
        Assert.Equal([carolId], Recipients(first.Id));

        await bobSocket.DisposeAsync();
        await WaitForPresenceAsync(alice, bobId, online: false);
        var second = await alice.SendTextAsync(group.Id, "two");
        await _sink.WaitForAsync(r => r.Of(group.Id).Count(x => x.Type == "message.created") >= 2);
        Assert.Equal([bobId, carolId], Recipients(second.Id));
    }

    /// <summary>Waits until the first instance reports the user's presence as given (as the relay will read it).</summary>
    private static async Task WaitForPresenceAsync(ParleyApi api, string userId, bool online)
    {
        for (var i = 0; i < 200; i++)
        {
            var presence = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/users/{userId}/presence"));
            if (presence.GetProperty("online").GetBoolean() == online)
            {
                return;
            }

            await Task.Delay(25, Ct);
        }

        Assert.Fail($"{userId} never became {(online ? "online" : "offline")}");
    }

    private List<string> Recipients(Guid messageId) =>
    [
        .. _sink.Records
            .Where(r => r.Topic == EventTopic.Notifications && r.Payload().GetProperty("message_id").GetGuid() == messageId)
            .Select(r => r.Key)
            .Order(StringComparer.Ordinal),
    ];
}

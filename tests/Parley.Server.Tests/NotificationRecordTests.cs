using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Events;
using Parley.Server.Realtime;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// parley.notifications (docs/events.md): one record per recipient with no device connected when the relay publishes,
/// never for the sender; preview, mention flag and unread badge.
/// </summary>
public sealed class NotificationRecordTests : IAsyncLifetime
{
    private readonly InMemoryEventSink _sink = new();
    private readonly ParleyFactory _factory;

    public NotificationRecordTests()
    {
        _factory = new ParleyFactory(
            settings =>
            {
                settings["Events:PollInterval"] = "00:00:00.010";
                settings["Events:Notifications:PreviewLength"] = "12";
            },
            services: services => services.AddSingleton<IEventSink>(_sink));
        _factory.StartKestrel();
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static object Mentioning(Guid conversationId, string content, string userId, string clientMessageId) => new
    {
        conversation_id = conversationId,
        message_type = "text",
        content,
        client_message_id = clientMessageId,
        mentions = new[] { new { user_id = userId, offset = content.IndexOf('@', StringComparison.Ordinal), length = userId.Length + 1 } },
    };

    [Fact]
    public async Task Notifications_OnlyForRecipientsWithoutADeviceConnected()
    {
        var (aliceId, bobId, carolId) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        var alice = _factory.BoundedApi(aliceId);
        var group = await alice.CreateGroupAsync("Launch", bobId, carolId);
        var bobSocket = await WsClient.ConnectAsync(_factory, bobId);

        using (var sent = await alice.PostMessageAsync(Mentioning(group.Id, $"hi @{carolId}", carolId, "m1")))
        {
            Assert.True(sent.IsSuccessStatusCode);
        }

        var first = (await _sink.WaitForAsync(r => r.Of(group.Id).Any(x => x.Type == "message.created"))).Of(group.Id).Single(x => x.Type == "message.created");
        var notifications = Notifications(first);
        // bob has a socket: no push; alice sent it: never; carol has none.
        var carol = Assert.Single(notifications);
        Assert.Equal(carolId, carol.Key);
        var payload = carol.Payload();
        Assert.Equal(carolId, payload.GetProperty("user_id").GetString());
        Assert.Equal("group", payload.GetProperty("conversation_type").GetString());
        Assert.Equal("Launch", payload.GetProperty("conversation_name").GetString());
        Assert.Equal(aliceId, payload.GetProperty("sender_id").GetString());
        Assert.Equal(first.Payload().GetProperty("message_id").GetString(), payload.GetProperty("message_id").GetString());
        Assert.True(payload.GetProperty("mentioned").GetBoolean());
        Assert.Equal(1, payload.GetProperty("unread_count").GetInt64());
        Assert.Equal("hi @" + carolId[..8], payload.GetProperty("preview").GetString());
        Assert.True(payload.GetProperty("preview_truncated").GetBoolean());
        Assert.Equal(first.Seq(), carol.Seq());
        EventRecords.AssertMatchesSchema(carol.Body);

        // All of bob's sockets gone: now he gets one too.
        await bobSocket.DisposeAsync();
        var hub = _factory.Services.GetRequiredService<ConnectionHub>();
        for (var i = 0; i < 200 && hub.IsConnected(bobId); i++)
        {
            await Task.Delay(20, Ct);
        }

        await alice.SendTextAsync(group.Id, "short");
        var second = (await _sink.WaitForAsync(r => r.Of(group.Id).Count(x => x.Type == "message.created") >= 2))
            .Of(group.Id).Where(x => x.Type == "message.created").Last();
        var again = Notifications(second);
        Assert.Equal([bobId, carolId], again.Select(n => n.Key).Order(StringComparer.Ordinal));
        Assert.All(again, n => Assert.False(n.Payload().GetProperty("mentioned").GetBoolean()));
        Assert.All(again, n => Assert.Equal("short", n.Payload().GetProperty("preview").GetString()));
        Assert.Equal(2, again.Single(n => n.Key == carolId).Payload().GetProperty("unread_count").GetInt64());
        Assert.Equal(2, again.Single(n => n.Key == bobId).Payload().GetProperty("unread_count").GetInt64());
        Assert.Equal(3, _sink.Records.Where(r => r.Topic == EventTopic.Notifications).Select(r => r.EventId).Distinct().Count());
    }

    [Fact]
    public async Task Notifications_TheSendersOwnDevicesDoNotMatter_AndTheSenderNeverGetsOne()
    {
        var (aliceId, bobId) = (NewUser("alice"), NewUser("bob"));
        var alice = _factory.BoundedApi(aliceId);
        var direct = await alice.CreateDirectAsync(bobId);

        await alice.SendTextAsync(direct.Id, "one");
        var created = (await _sink.WaitForAsync(r => r.Of(direct.Id).Any(x => x.Type == "message.created"))).Of(direct.Id).Single(x => x.Type == "message.created");

        var only = Assert.Single(Notifications(created));
        Assert.Equal(bobId, only.Key);
        Assert.Equal("direct", only.Payload().GetProperty("conversation_type").GetString());
        Assert.Equal(JsonValueKind.Null, only.Payload().GetProperty("conversation_name").ValueKind);

        // The relay's gauges and counters, per sink (the backlog is measured once a second).
        using var client = _factory.Anonymous();
        string[] lines = [];
        for (var i = 0; i < 100 && Metric(lines, "parley_events_backlog") != "0"; i++)
        {
            lines = (await client.GetStringAsync(new Uri("/metrics", UriKind.Relative), Ct)).Split('\n');
            await Task.Delay(50, Ct);
        }

        Assert.Equal("0", Metric(lines, "parley_events_backlog"));
        Assert.Equal("0", Metric(lines, "parley_events_backlog_age_seconds"));
        Assert.True(long.Parse(Metric(lines, "parley_events_published_total")!, System.Globalization.CultureInfo.InvariantCulture) >= 3);
        // Nothing failed, and the series say so from the start: an alert on their first increase needs the 0 before it.
        Assert.Equal("0", Metric(lines, "parley_events_dead_letters_total"));
        Assert.Equal("0", Metric(lines, "parley_events_publish_failures_total"));
    }

    [Fact]
    public async Task Notifications_NoneForARecipientTheMessageWasDeliveredToBeforeItWasPublished()
    {
        var (aliceId, bobId, carolId) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        var alice = _factory.BoundedApi(aliceId);
        var group = await alice.CreateGroupAsync("Away", bobId, carolId);

        // The broker is away; meanwhile bob reads the message on a device that is gone again when the relay publishes.
        _sink.IsDown = true;
        var message = await alice.SendTextAsync(group.Id, "while the broker is away");
        await _factory.BoundedApi(bobId).MarkReadAsync(message.Id);
        // Two refused passes after the read: the second read the outbox after the read had committed.
        var refused = _sink.Refused;
        for (var i = 0; i < 400 && _sink.Refused < refused + 2; i++)
        {
            await Task.Delay(25, Ct);
        }

        Assert.True(_sink.Refused >= refused + 2);
        _sink.IsDown = false;

        var created = (await _sink.WaitForAsync(r => r.Of(group.Id).Any(x => x.Type == "message.created"))).Of(group.Id).Single(x => x.Type == "message.created");
        Assert.Equal([carolId], Notifications(created).Select(n => n.Key));
    }

    /// <summary>The value of the metric's series for the in-memory sink, or null.</summary>
    private static string? Metric(string[] lines, string name) =>
        lines.FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains("sink=\"memory\"", StringComparison.Ordinal))
            ?.Split(' ')[1];

    /// <summary>The notifications of one message: the records after its message.created that name its message id.</summary>
    private List<EventRecord> Notifications(EventRecord created)
    {
        var messageId = created.Payload().GetProperty("message_id").GetString();
        return [.. _sink.Records.Where(r => r.Topic == EventTopic.Notifications && r.Payload().GetProperty("message_id").GetString() == messageId)];
    }
}

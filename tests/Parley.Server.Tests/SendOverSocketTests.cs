using System.Net;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary><c>send_message</c> over the WebSocket: acknowledged by <c>message_ack</c>, idempotent by client_message_id.</summary>
public sealed class SendOverSocketTests : IAsyncLifetime
{
    private ParleyFactory _factory = new();

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task SendMessage_IsAcknowledgedWithTheMessageAndDeliveredToEveryDevice()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var aliceSocket = await WsClient.ConnectAsync(_factory, "alice");
        await using var bobSocket = await WsClient.ConnectAsync(_factory, "bob");

        await aliceSocket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "hi", client_message_id = "c-1" });

        var ack = await aliceSocket.NextAsync("message_ack");
        Assert.Equal("c-1", ack.GetProperty("client_message_id").GetString());
        Assert.Equal("hi", ack.GetProperty("message").GetProperty("content").GetString());
        var id = ack.GetProperty("message").GetProperty("id").GetGuid();
        await bobSocket.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == id);
        await aliceSocket.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == id);
    }

    [Fact]
    public async Task SendMessage_RetriedWithTheSameId_AcknowledgedWithTheOriginalAndBroadcastOnce()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var aliceSocket = await WsClient.ConnectAsync(_factory, "alice");
        await using var bobSocket = await WsClient.ConnectAsync(_factory, "bob");
        var body = new { conversation_id = conversation.Id, message_type = "text", content = "once", client_message_id = "retry-1" };

        await aliceSocket.SendAsync("send_message", body);
        var first = await aliceSocket.NextAsync("message_ack");
        await aliceSocket.SendAsync("send_message", body);
        var second = await aliceSocket.NextAsync("message_ack");

        Assert.Equal(first.GetProperty("message").GetProperty("id").GetGuid(), second.GetProperty("message").GetProperty("id").GetGuid());
        await bobSocket.NextAsync("new_message");
        await bobSocket.AssertNoFrameAsync("new_message", TimeSpan.FromSeconds(1));
        Assert.Single((await alice.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task SendMessage_SameIdDifferentBody_ErrorNamesTheClientMessageId()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var socket = await WsClient.ConnectAsync(_factory, "alice");
        await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "a", client_message_id = "dup" });
        await socket.NextAsync("message_ack");

        await socket.SendAsync("{\"type\":\"send_message\",\"id\":9,\"payload\":{\"conversation_id\":\"" + conversation.Id + "\",\"message_type\":\"text\",\"content\":\"b\",\"client_message_id\":\"dup\"}}");

        var error = await socket.NextAsync("error");
        Assert.Equal("idempotency_conflict", error.GetProperty("code").GetString());
        Assert.Equal("dup", error.GetProperty("client_message_id").GetString());
        Assert.Equal(9, error.GetProperty("id").GetInt32());
    }

    [Theory]
    [InlineData("{\"conversation_id\":\"CONV\",\"message_type\":\"text\",\"content\":\"no id\"}", "validation_failed")]
    [InlineData("{\"conversation_id\":\"CONV\",\"message_type\":\"text\",\"content\":\"\",\"client_message_id\":\"e-1\"}", "validation_failed")]
    [InlineData("{\"conversation_id\":\"00000000-0000-7000-8000-000000000001\",\"message_type\":\"text\",\"content\":\"x\",\"client_message_id\":\"e-2\"}", "not_found")]
    public async Task SendMessage_Invalid_ErrorFrameAndTheConnectionStaysOpen(string payload, string code)
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var socket = await WsClient.ConnectAsync(_factory, "alice");

        await socket.SendAsync("{\"type\":\"send_message\",\"payload\":" + payload.Replace("CONV", conversation.Id.ToString(), StringComparison.Ordinal) + "}");

        Assert.Equal(code, (await socket.NextAsync("error")).GetProperty("code").GetString());
        await socket.PingAsync();
    }

    [Fact]
    public async Task SendMessage_SharesTheUsersSendRateWithRest()
    {
        await _factory.DisposeAsync();
        _factory = new ParleyFactory(s =>
        {
            s["Limits:SendBurst"] = "2";
            s["Limits:SendRatePerSecond"] = "1";
        });
        _factory.StartKestrel();
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "rest 1");
        await alice.SendTextAsync(conversation.Id, "rest 2");
        await using var socket = await WsClient.ConnectAsync(_factory, "alice");

        await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "over", client_message_id = "r-1" });

        var error = await socket.NextAsync("error");
        Assert.Equal("rate_limited", error.GetProperty("code").GetString());
        Assert.Equal("r-1", error.GetProperty("client_message_id").GetString());
    }

    [Fact]
    public async Task SendRefusedInPassing_HoldsBackTheSocketsLaterSendsToThatConversation_UntilItComesAgain()
    {
        // A client sends without waiting for each ack: a send refused for the rate was stored after the one behind it,
        // which got the next token first, and everyone saw the two messages the wrong way round.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = RateLimited(time);
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var other = await alice.CreateDirectAsync("carol");
        await using var socket = await WsClient.ConnectAsync(factory, "alice");
        await SendMessageAsync(socket, conversation.Id, "a");
        await AckAsync(socket, "a");
        await SendMessageAsync(socket, conversation.Id, "b");
        Assert.Equal("rate_limited", (await ErrorAsync(socket, "b")).GetProperty("code").GetString());

        time.Advance(TimeSpan.FromSeconds(1));
        await SendMessageAsync(socket, conversation.Id, "c");
        var held = await ErrorAsync(socket, "c");
        Assert.Equal("rate_limited", held.GetProperty("code").GetString());
        Assert.Contains("'b'", held.GetProperty("message").GetString(), StringComparison.Ordinal);
        await SendMessageAsync(socket, other.Id, "d"); // another conversation is not held back, and the held send took no token
        await AckAsync(socket, "d");

        time.Advance(TimeSpan.FromSeconds(1));
        await SendMessageAsync(socket, conversation.Id, "b");
        var b = await AckAsync(socket, "b");
        time.Advance(TimeSpan.FromSeconds(1));
        await SendMessageAsync(socket, conversation.Id, "c");
        var c = await AckAsync(socket, "c");
        Assert.True(b < c, $"b stored at seq {b}, c at {c}");
    }

    [Fact]
    public async Task SendRefusedInPassing_ThatNeverComesAgain_HoldsTheOthersBackForTenSecondsAtMost()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = RateLimited(time);
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var socket = await WsClient.ConnectAsync(factory, "alice");
        await SendMessageAsync(socket, conversation.Id, "a");
        await AckAsync(socket, "a");
        await SendMessageAsync(socket, conversation.Id, "b");
        await ErrorAsync(socket, "b");
        time.Advance(TimeSpan.FromSeconds(9));
        await SendMessageAsync(socket, conversation.Id, "c");
        Assert.Contains("'b'", (await ErrorAsync(socket, "c")).GetProperty("message").GetString(), StringComparison.Ordinal);

        time.Advance(TimeSpan.FromSeconds(1)); // the app gave "b" up
        await SendMessageAsync(socket, conversation.Id, "c");
        await AckAsync(socket, "c");
    }

    [Fact]
    public async Task SendRefusedByTheFrameBudget_NamesTheSend_AndHoldsBackTheOnesBehindIt()
    {
        // The frame budget (shared with typing and reads) refused a send without naming it and set no hold: the send
        // behind it could get the next token and be stored first.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = FrameLimited(time, inboundBurst: 2);
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var socket = await WsClient.ConnectAsync(factory, "alice");
        await SendMessageAsync(socket, conversation.Id, "a");
        await AckAsync(socket, "a");
        await SendMessageAsync(socket, conversation.Id, "b");
        await AckAsync(socket, "b");
        await SendMessageAsync(socket, conversation.Id, "c");
        Assert.Equal("rate_limited", (await ErrorAsync(socket, "c")).GetProperty("code").GetString());

        time.Advance(TimeSpan.FromSeconds(1));
        await SendMessageAsync(socket, conversation.Id, "d");
        Assert.Contains("'c'", (await ErrorAsync(socket, "d")).GetProperty("message").GetString(), StringComparison.Ordinal);
        await ResendInOrderAsync(socket, time, conversation.Id, TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task SendRefusedByTheFrameBudgetBehindAHold_LeavesTheHoldWithTheEarlierSend()
    {
        // A frame-budget refusal replaced the hold: c was refused first, but d (refused by the frame budget after it)
        // took the hold, so c, sent again first as clients do, was refused for d, and d was stored before c.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = FrameLimited(time, inboundBurst: 3, sendBurst: 2);
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var socket = await WsClient.ConnectAsync(factory, "alice");
        await SendMessageAsync(socket, conversation.Id, "a");
        await SendMessageAsync(socket, conversation.Id, "b");
        await SendMessageAsync(socket, conversation.Id, "c");
        await AckAsync(socket, "a");
        await AckAsync(socket, "b");
        Assert.Equal("rate_limited", (await ErrorAsync(socket, "c")).GetProperty("code").GetString()); // the send rate
        await SendMessageAsync(socket, conversation.Id, "d");
        Assert.Equal("rate_limited", (await ErrorAsync(socket, "d")).GetProperty("code").GetString()); // the frame budget

        await ResendInOrderAsync(socket, time, conversation.Id, TimeSpan.FromSeconds(2));
    }

    /// <summary>The client sends the refused c again once the clock moved on, then d: c is stored first.</summary>
    private static async Task ResendInOrderAsync(WsClient socket, FakeTimeProvider time, Guid conversationId, TimeSpan step)
    {
        time.Advance(step);
        await SendMessageAsync(socket, conversationId, "c");
        var c = await AckAsync(socket, "c");
        time.Advance(step);
        await SendMessageAsync(socket, conversationId, "d");
        Assert.True(c < await AckAsync(socket, "d"));
    }

    private static ParleyFactory RateLimited(FakeTimeProvider time) =>
        new ParleyFactory(s =>
        {
            s["Limits:SendBurst"] = "1";
            s["Limits:SendRatePerSecond"] = "1";
        }, time: time).StartKestrel();

    /// <summary>A frame budget of <paramref name="inboundBurst"/> refilled by one a second; with <paramref name="sendBurst"/>, a send rate likewise.</summary>
    private static ParleyFactory FrameLimited(FakeTimeProvider time, int inboundBurst, int? sendBurst = null) =>
        new ParleyFactory(s =>
        {
            s["Realtime:InboundBurst"] = inboundBurst.ToString(System.Globalization.CultureInfo.InvariantCulture);
            s["Realtime:InboundFramesPerSecond"] = "1";
            if (sendBurst is { } burst)
            {
                s["Limits:SendBurst"] = burst.ToString(System.Globalization.CultureInfo.InvariantCulture);
                s["Limits:SendRatePerSecond"] = "1";
            }
        }, time: time).StartKestrel();

    /// <summary>A text send whose content is its client_message_id.</summary>
    private static Task SendMessageAsync(WsClient socket, Guid conversationId, string clientMessageId) =>
        socket.SendAsync("send_message", new { conversation_id = conversationId, message_type = "text", content = clientMessageId, client_message_id = clientMessageId });

    private static async Task<long> AckAsync(WsClient socket, string clientMessageId) =>
        (await socket.NextAsync("message_ack", p => p.GetProperty("client_message_id").GetString() == clientMessageId))
            .GetProperty("message").GetProperty("seq").GetInt64();

    private static Task<System.Text.Json.JsonElement> ErrorAsync(WsClient socket, string clientMessageId) =>
        socket.NextAsync("error", p => p.GetProperty("client_message_id").GetString() == clientMessageId);

    [Fact]
    public async Task Retry_AfterARestartOnTheSameDatabase_ReturnsTheOriginal()
    {
        using (var alice = _factory.Api("alice"))
        {
            var conversation = await alice.CreateDirectAsync("bob");
            var original = await alice.SendTextAsync(conversation.Id, "durable", clientMessageId: "restart-1");
            var settings = _factory.StorageSettings();
            await _factory.DisposeKeepingDataAsync();
            _factory = new ParleyFactory(s =>
            {
                foreach (var (key, value) in settings)
                {
                    s[key] = value;
                }
            }, sharedPostgres: settings.GetValueOrDefault("ConnectionStrings:Postgres"));
            _factory.StartKestrel();

            using var again = _factory.Api("alice");
            var response = await again.PostAsync(
                "/api/v1/messages", new { conversation_id = conversation.Id, content = "durable", message_type = "text", client_message_id = "restart-1" });
            var retried = await ParleyApi.ReadAsync<Storage.Message>(response, HttpStatusCode.OK);
            Assert.Equal(original.Id, retried.Id);
            Assert.Equal(original.Seq, retried.Seq);
        }
    }
}

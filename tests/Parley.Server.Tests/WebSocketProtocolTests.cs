using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Client frames: <c>{"type", "id"?, "payload"?}</c>. Bad frames get an <c>error</c> frame (echoing the frame's id)
/// and the connection stays open; a frame over Limits:MaxFrameBytes closes the socket with 1009.
/// </summary>
public sealed class WebSocketProtocolTests : IAsyncLifetime
{
    private const int MaxFrameBytes = 2048;

    private readonly ParleyFactory _factory = new(settings => settings["Limits:MaxFrameBytes"] = MaxFrameBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Ping_AnyTime_AnswersPongWithTimestamp()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"ping"}""");

        var pong = await client.NextAsync("pong");
        var timestamp = pong.GetProperty("timestamp").GetDateTimeOffset();
        Assert.InRange(timestamp, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
    }

    [Theory]
    [InlineData("""{"type":"ping""")]
    [InlineData("not json at all")]
    [InlineData("""{"type":"ping"} {"type":"ping"}""")]
    [InlineData("[]")]
    [InlineData("""[{"type":"ping"}]""")]
    [InlineData("\"ping\"")]
    [InlineData("42")]
    [InlineData("")]
    public async Task Frame_NotOneJsonObject_ErrorInvalidFrameAndConnectionStaysOpen(string frame)
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync(frame);

        await client.NextErrorAsync("invalid_frame");
        await client.PingAsync();
    }

    [Theory]
    // Audit reproduction: an escaped lone surrogate is valid JSON but not text; it closed the socket with 1000.
    [InlineData("""{"type":"\ud800","id":"f-1"}""")]
    [InlineData("""{"type":"ping\udc00","id":"f-1"}""")]
    [InlineData("""{"type":"typing","id":"f-1","payload":{"conversation_id":"\ud800","is_typing":true}}""")]
    [InlineData("""{"type":"send_message","id":"f-1","payload":{"conversation_id":"01a23dda-3607-7505-bca7-822a649d5702","message_type":"text","content":"a\ud800b","client_message_id":"s-1"}}""")]
    [InlineData("""{"type":"resume","id":"f-1","payload":{"cursor":"\udfff"}}""")]
    public async Task Frame_LoneSurrogateInAString_ErrorInvalidFrameAndConnectionStaysOpen(string frame)
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync(frame);

        await client.NextErrorAsync("invalid_frame", id: "f-1");
        await client.PingAsync();
        Assert.False(client.Closed.IsCompleted, "the socket closed");
    }

    [Theory]
    [InlineData("""{"id":"f-1","payload":{}}""")]
    [InlineData("""{"id":"f-1","type":null}""")]
    [InlineData("""{"id":"f-1","type":7}""")]
    [InlineData("""{"id":"f-1","type":""}""")]
    [InlineData("""{"type":{"type":"ping"},"id":"f-1"}""")]
    [InlineData("""{"type":["ping"],"id":"f-1"}""")]
    public async Task Frame_WithoutStringType_ErrorInvalidFrameEchoesIdAndConnectionStaysOpen(string frame)
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync(frame);

        await client.NextErrorAsync("invalid_frame", id: "f-1");
        await client.PingAsync();
    }

    [Fact]
    public async Task Frame_APayloadPropertyGivenTwice_IsRefused()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync(
            """{"type":"typing","id":"f-1","payload":{"conversation_id":"01a23dda-3607-7505-bca7-822a649d5702","is_typing":true,"IS_TYPING":false}}""");

        var message = (await client.NextErrorAsync("invalid_frame", id: "f-1")).GetProperty("message").GetString()!;
        Assert.Contains("more than once", message, StringComparison.Ordinal);
        Assert.DoesNotContain("Parley.", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TextFrameThatIsNotUtf8_ClosesWith1007()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        // {"type":"ping"} with a byte that UTF-8 never has: RFC 6455 requires text frames to be UTF-8.
        byte[] frame = [.. "{\"type\":\"ping"u8, 0xFF, .. "\"}"u8];
        await client.Socket.SendAsync(frame, System.Net.WebSockets.WebSocketMessageType.Text, true, TestContext.Current.CancellationToken);

        Assert.Equal(System.Net.WebSockets.WebSocketCloseStatus.InvalidPayloadData, await client.ClosedAsync(TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("payload", "payload")]
    [InlineData("type", "type")]
    [InlineData("payload", "Payload")] // another case: a filter that matches names without regard to case reads this one
    [InlineData("type", "TYPE")]
    public async Task Frame_ATopLevelMemberGivenTwice_IsRefusedAndNothingIsStored(string member, string secondName)
    {
        using var api = _factory.Api("alice");
        var conversation = await api.CreateDirectAsync("bob");
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        var benign = $$"""{"conversation_id":"{{conversation.Id}}","message_type":"text","content":"benign"}""";
        var other = $$"""{"conversation_id":"{{conversation.Id}}","message_type":"text","content":"something else"}""";
        var frame = member == "payload"
            ? $$"""{"type":"send_message","id":"f-1","payload":{{benign}},"{{secondName}}":{{other}}}"""
            : $$"""{"type":"send_message","id":"f-1","{{secondName}}":"typing","payload":{{other}}}""";

        await client.SendAsync(frame);

        var message = (await client.NextErrorAsync("invalid_frame", id: "f-1")).GetProperty("message").GetString()!;
        Assert.Contains($"'{member}' is given more than once", message, StringComparison.Ordinal);
        await client.PingAsync();
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Frame_AValueOfTheWrongType_NamesTheValueNotADotNetType()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"typing","id":"f-1","payload":{"conversation_id":"01a23dda-3607-7505-bca7-822a649d5702","is_typing":"yes"}}""");

        var message = (await client.NextErrorAsync("invalid_frame", id: "f-1")).GetProperty("message").GetString()!;
        Assert.Contains("$.is_typing has the wrong type", message, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Frame_UnknownType_ErrorUnknownTypeEchoesIdAndConnectionStaysOpen()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"subscribe","id":"req-42","payload":{"channel":"x"}}""");

        var error = await client.NextErrorAsync("unknown_type", id: "req-42");
        Assert.Contains("subscribe", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await client.PingAsync();
    }

    [Fact]
    public async Task Frame_NumericId_EchoedAsTheSameNumber()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"nope","id":7}""");
        await client.SendAsync("""{"id":12.5,"payload":{}}""");

        var unknown = await client.NextErrorAsync("unknown_type");
        Assert.Equal(JsonValueKind.Number, unknown.GetProperty("id").ValueKind);
        Assert.Equal(7, unknown.GetProperty("id").GetInt64());
        var invalid = await client.NextErrorAsync("invalid_frame");
        Assert.Equal(JsonValueKind.Number, invalid.GetProperty("id").ValueKind);
        Assert.Equal(12.5, invalid.GetProperty("id").GetDouble());
    }

    [Fact]
    public async Task Frame_StringIds_EchoedAsTheSameStrings()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"nope","id":"7"}""");
        await client.SendAsync("""{"type":"nope","id":"caf\u00e9 \"quoted\""}""");

        var numberLike = await client.NextErrorAsync("unknown_type");
        Assert.Equal(JsonValueKind.String, numberLike.GetProperty("id").ValueKind);
        Assert.Equal("7", numberLike.GetProperty("id").GetString());
        await client.NextErrorAsync("unknown_type", id: "caf\u00e9 \"quoted\"");
    }

    [Fact]
    public async Task Frame_IdOfAnotherJsonType_ErrorWithoutId()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"nope","id":{"a":1}}""");

        var error = await client.NextErrorAsync("unknown_type");
        Assert.Equal(JsonValueKind.Null, error.GetProperty("id").ValueKind);
    }

    [Fact]
    public async Task Frame_BinaryMessage_ErrorInvalidFrameAndConnectionStaysOpen()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.Socket.SendAsync(Encoding.UTF8.GetBytes("""{"type":"ping"}"""), WebSocketMessageType.Binary, true, TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);

        await client.NextErrorAsync("invalid_frame");
        // The binary frame was refused, not answered: the only pong is the one of the proof.
        await client.PingAsync();
        await client.AssertNoFrameAsync("pong", TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task Frame_SeveralBadFramesInARow_OneErrorEachInOrderThenStillServed()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"nope","id":"a"}""");
        await client.SendAsync("{broken");
        await client.SendAsync("""{"type":"typing","id":"c","payload":{}}""");
        await client.SendAsync("""{"type":"nope","id":"d"}""");

        await client.NextErrorAsync("unknown_type", id: "a");
        await client.NextErrorAsync("invalid_frame");
        await client.NextErrorAsync("invalid_id", id: "c");
        await client.NextErrorAsync("unknown_type", id: "d");
        await client.PingAsync();
    }

    [Fact]
    public async Task Typing_WithoutConversationId_ErrorInvalidIdEchoesId()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync("""{"type":"typing","id":"t-1","payload":{"is_typing":true}}""");

        await client.NextErrorAsync("invalid_id", id: "t-1");
        await client.PingAsync();
    }

    [Fact]
    public async Task Typing_WithoutIsTyping_ErrorValidationFailed()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync($$$"""{"type":"typing","id":"t-2","payload":{"conversation_id":"{{{conversation.Id}}}"}}""");

        await client.NextErrorAsync("validation_failed", id: "t-2");
        await client.PingAsync();
    }

    [Fact]
    public async Task Typing_PayloadOfWrongJsonType_ErrorInvalidFrame()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync($$$"""{"type":"typing","id":"t-3","payload":{"conversation_id":"{{{conversation.Id}}}","is_typing":"yes"}}""");
        await client.SendAsync("""{"type":"typing","id":"t-4","payload":[1,2]}""");

        await client.NextErrorAsync("invalid_frame", id: "t-3");
        await client.NextErrorAsync("invalid_frame", id: "t-4");
        await client.PingAsync();
    }

    [Theory]
    [InlineData("""{"message_id":"not-a-uuid"}""", "invalid_id")]
    [InlineData("""{"message_id":"0199a0c0-0000-7000-8000-00000000000"}""", "invalid_id")]
    [InlineData("""{}""", "validation_failed")]
    [InlineData("""{"message_id":12}""", "invalid_frame")]
    public async Task ReadReceipt_InvalidMessageId_ErrorFrame(string payload, string code)
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync($$"""{"type":"read_receipt","id":"r-1","payload":{{payload}}}""");

        await client.NextErrorAsync(code, id: "r-1");
        await client.PingAsync();
    }

    [Fact]
    public async Task ReadReceipt_UnknownMessage_ErrorNotFound()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync($$$"""{"type":"read_receipt","id":"r-2","payload":{"message_id":"{{{Guid.CreateVersion7()}}}"}}""");

        await client.NextErrorAsync("not_found", id: "r-2");
        await client.PingAsync();
    }

    [Theory]
    [InlineData("""{"seq":1}""", "invalid_id")]
    [InlineData("""{"conversation_id":"CONV"}""", "validation_failed")]
    [InlineData("""{"conversation_id":"CONV","seq":0}""", "validation_failed")]
    [InlineData("""{"conversation_id":"CONV","seq":-3}""", "validation_failed")]
    [InlineData("""{"conversation_id":"CONV","seq":"five"}""", "invalid_frame")]
    public async Task Ack_InvalidPayload_ErrorFrame(string payload, string code)
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync($$$"""{"type":"ack","id":"k-1","payload":{{{payload.Replace("CONV", conversation.Id.ToString(), StringComparison.Ordinal)}}}}""");

        await client.NextErrorAsync(code, id: "k-1");
        await client.PingAsync();
    }

    [Fact]
    public async Task Frame_JustUnderTheSizeLimit_IsProcessed()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        var frame = Pad("""{"type":"nope","id":"big","pad":"PAD"}""", MaxFrameBytes - 10);

        await client.SendAsync(frame);

        await client.NextErrorAsync("unknown_type", id: "big");
        await client.PingAsync();
    }

    [Fact]
    public async Task Frame_OverTheSizeLimit_ClosesWith1009()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        await client.SendAsync(Pad("""{"type":"ping","pad":"PAD"}""", MaxFrameBytes + 500));

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await client.ClosedAsync());
        // The oversized frame itself was not processed.
        Assert.DoesNotContain(client.All(), f => f.GetProperty("type").GetString() == "pong");
    }

    [Fact]
    public async Task Frame_OverTheSizeLimitInSmallFragments_ClosesWith1009()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        var bytes = Encoding.UTF8.GetBytes(Pad("""{"type":"ping","pad":"PAD"}""", 3 * MaxFrameBytes));

        // One message in fragments that are each far below the limit: the limit is on the message, not the fragment.
        for (var offset = 0; offset < bytes.Length; offset += 500)
        {
            var length = Math.Min(500, bytes.Length - offset);
            await client.Socket.SendAsync(
                bytes.AsMemory(offset, length), WebSocketMessageType.Text, offset + length == bytes.Length, TestContext.Current.CancellationToken)
                .AsTask().WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        }

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await client.ClosedAsync());
    }

    [Fact]
    public async Task Frame_OverTheSizeLimitAndNeverFinished_ClosesWith1009WithoutWaitingForItsEnd()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        var fragment = Encoding.UTF8.GetBytes(new string('x', 1000));

        // A message that is already over the limit and whose last fragment never comes: the server must not keep
        // reading (and discarding) it forever before it closes.
        await client.Socket.SendAsync(Encoding.UTF8.GetBytes("""{"type":"ping","pad":" """), WebSocketMessageType.Text, false, TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        for (var sent = 0; sent <= MaxFrameBytes; sent += fragment.Length)
        {
            await client.Socket.SendAsync(fragment, WebSocketMessageType.Text, false, TestContext.Current.CancellationToken)
                .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        }

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await client.ClosedAsync());
    }

    [Fact]
    public async Task Frame_UnderTheLimitInFragments_IsReassembledAndProcessed()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        var bytes = Encoding.UTF8.GetBytes(Pad("""{"type":"nope","id":"frag","pad":"PAD"}""", MaxFrameBytes - 100));

        for (var offset = 0; offset < bytes.Length; offset += 300)
        {
            var length = Math.Min(300, bytes.Length - offset);
            await client.Socket.SendAsync(
                bytes.AsMemory(offset, length), WebSocketMessageType.Text, offset + length == bytes.Length, TestContext.Current.CancellationToken)
                .AsTask().WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        }

        await client.NextErrorAsync("unknown_type", id: "frag");
        await client.PingAsync();
    }

    [Fact]
    public async Task Frame_OverTheSizeLimit_OtherSocketsOfTheUserStayOpen()
    {
        await using var offender = await WsClient.ConnectAsync(_factory, "alice", deviceId: "a");
        await using var other = await WsClient.ConnectAsync(_factory, "alice", deviceId: "b");

        await offender.SendAsync(Pad("""{"type":"ping","pad":"PAD"}""", MaxFrameBytes * 2));

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await offender.ClosedAsync());
        await other.PingAsync();
    }

    /// <summary>Replaces PAD in <paramref name="template"/> so that the frame is exactly <paramref name="totalBytes"/> bytes of ASCII.</summary>
    private static string Pad(string template, int totalBytes) =>
        template.Replace("PAD", new string('x', totalBytes - (template.Length - 3)), StringComparison.Ordinal);
}

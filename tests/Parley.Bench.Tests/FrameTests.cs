using System.Text;
using System.Text.Json;
using Parley.Bench.Client;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class FrameTests
{
    private static readonly Guid Conversation = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");

    [Fact]
    public void Parse_NewMessage_ReadsConversationSeqSenderAndMessageNumber()
    {
        var json = Encoding.UTF8.GetBytes($$$"""
            {"type":"new_message","payload":{"message":{"id":"01a20b3e-9622-7f2b-a039-409a9457aee2","conversation_id":"{{{Conversation}}}","seq":17,
            "sender_id":"b1-u3","message_type":"text","content":"x","reply_to_id":null,"mentions":[{"user_id":"b","offset":0,"length":1}],"media":null,
            "location":null,"client_message_id":"m4242","created_at":"2026-11-24T01:49:40.770Z","edited_at":null,"deleted_at":null},"timestamp":"2026-11-24T01:49:40.770Z"}}
            """);

        Assert.True(ServerFrame.TryParse(json, out var frame));
        Assert.Equal(FrameKind.NewMessage, frame.Kind);
        Assert.Equal(Conversation, frame.ConversationId);
        Assert.Equal(17, frame.Seq);
        Assert.Equal(4242, frame.MessageIndex);
        Assert.Equal("b1-u3", Encoding.UTF8.GetString(frame.SenderId));
    }

    [Fact]
    public void Parse_TypeAfterPayload_StillReadsThePayload()
    {
        var json = """{"payload":{"client_message_id":"m7","message":{"seq":3,"client_message_id":"m7"}},"type":"message_ack"}"""u8;

        Assert.True(ServerFrame.TryParse(json, out var frame));
        Assert.Equal(FrameKind.MessageAck, frame.Kind);
        Assert.Equal(7, frame.MessageIndex);
    }

    [Fact]
    public void Parse_Error_ReadsCodeAndTheFailedSend()
    {
        var json = """{"type":"error","payload":{"code":"rate_limited","message":"slow down","id":null,"client_message_id":"m12"}}"""u8;

        Assert.True(ServerFrame.TryParse(json, out var frame));
        Assert.Equal(FrameKind.Error, frame.Kind);
        Assert.Equal("rate_limited", Encoding.UTF8.GetString(frame.Code));
        Assert.Equal(12, frame.MessageIndex);
    }

    [Theory]
    [InlineData("connected", (int)FrameKind.Connected)]
    [InlineData("cursor", (int)FrameKind.Cursor)]
    [InlineData("sync_complete", (int)FrameKind.SyncComplete)]
    public void Parse_CursorCarryingFrames_ReadTheCursor(string type, int expected)
    {
        var kind = (FrameKind)expected;
        var json = Encoding.UTF8.GetBytes($$$"""{"type":"{{{type}}}","payload":{"connection_id":"c","user_id":"u","cursor":"AAEC-xyz_","acks":true}}""");

        Assert.True(ServerFrame.TryParse(json, out var frame));
        Assert.Equal(kind, frame.Kind);
        Assert.Equal("AAEC-xyz_", Encoding.UTF8.GetString(frame.Cursor));
    }

    [Fact]
    public void Parse_SyncReset_ReadsTheReasonAsCode()
    {
        Assert.True(ServerFrame.TryParse("""{"type":"sync_reset","payload":{"cursor":"c2","reason":"cursor_expired"}}"""u8, out var frame));
        Assert.Equal(FrameKind.SyncReset, frame.Kind);
        Assert.Equal("cursor_expired", Encoding.UTF8.GetString(frame.Code));
    }

    [Fact]
    public void Parse_OtherFrames_AreOther()
    {
        Assert.True(ServerFrame.TryParse("""{"type":"typing","payload":{"conversation_id":"x","is_typing":true}}"""u8, out var frame));
        Assert.Equal(FrameKind.Other, frame.Kind);
    }

    [Theory]
    [InlineData("")]
    [InlineData("[1]")]
    [InlineData("{\"payload\":{}}")]
    [InlineData("{\"type\":1}")]
    [InlineData("{\"type\":\"new_message\",")]
    public void Parse_Malformed_IsFalse(string json) => Assert.False(ServerFrame.TryParse(Encoding.UTF8.GetBytes(json), out _));

    [Theory]
    [InlineData("m0", 0)]
    [InlineData("m123456789012", 123456789012)]
    [InlineData("m", -1)]
    [InlineData("x12", -1)]
    [InlineData("m12a", -1)]
    [InlineData("m-1", -1)]
    [InlineData("c-17", -1)]
    public void ParseMessageIndex_ReadsOnlyTheToolsOwnIds(string id, long index) =>
        Assert.Equal(index, ServerFrame.ParseMessageIndex(Encoding.UTF8.GetBytes(id)));

    [Fact]
    public void SendMessage_IsTheSendMessageFrameWithTheMessagesNumber()
    {
        using var frames = new ClientFrames();

        var bytes = frames.SendMessage(Conversation, 31, "hello"u8.ToArray());

        using var json = JsonDocument.Parse(bytes);
        Assert.Equal("send_message", json.RootElement.GetProperty("type").GetString());
        var payload = json.RootElement.GetProperty("payload");
        Assert.Equal(Conversation, payload.GetProperty("conversation_id").GetGuid());
        Assert.Equal("text", payload.GetProperty("message_type").GetString());
        Assert.Equal("hello", payload.GetProperty("content").GetString());
        Assert.Equal(ClientFrames.MessageId(31), payload.GetProperty("client_message_id").GetString());
        Assert.Equal(31, ServerFrame.ParseMessageIndex(Encoding.UTF8.GetBytes(payload.GetProperty("client_message_id").GetString()!)));
    }

    [Fact]
    public void Frames_ReuseTheirBuffer_EachFrameComplete()
    {
        using var frames = new ClientFrames();
        frames.SendMessage(Conversation, 1, new byte[300]);

        var ack = frames.Ack(Conversation, 9);

        using var json = JsonDocument.Parse(ack);
        Assert.Equal("ack", json.RootElement.GetProperty("type").GetString());
        Assert.Equal(9, json.RootElement.GetProperty("payload").GetProperty("seq").GetInt64());
        using var body = JsonDocument.Parse(frames.MessageBody(Conversation, 5, "x"u8.ToArray()));
        Assert.Equal("m5", body.RootElement.GetProperty("client_message_id").GetString());
    }
}

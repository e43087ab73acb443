using System.Text;
using System.Text.Json;
using Parley.Client.Protocol;

namespace Parley.Client.Tests;

/// <summary>Frames as the server writes them, read into the public records; client frames as the server expects them.</summary>
[Trait("Store", "Independent")]
public sealed class ProtocolTests
{
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");

    private static ServerFrame Parse(string json) => ServerFrames.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void Parse_NewMessage_ConversationAndSeqComeFromTheMessage()
    {
        var frame = Parse($$$"""
            {"type":"new_message","payload":{"message":{"id":"01a20b3e-9622-7f2b-a039-409a9457aee2","conversation_id":"{{{C}}}","seq":2,
            "sender_id":"alice","message_type":"text","content":"Hello","reply_to_id":null,"mentions":[{"user_id":"bob","offset":0,"length":5}],
            "media":null,"location":null,"client_message_id":"c-17","created_at":"2026-11-24T01:49:40.770Z","edited_at":null,"deleted_at":null},
            "timestamp":"2026-11-24T01:49:40.771Z"}}
            """);

        var e = Assert.IsType<MessageCreatedEvent>(frame.Payload);
        Assert.Equal(C, e.ConversationId);
        Assert.Equal(2, e.Seq);
        Assert.Equal("c-17", e.Message.ClientMessageId);
        Assert.Equal(new Mention("bob", 0, 5), Assert.Single(e.Message.Mentions!));
        Assert.Equal(DateTimeOffset.Parse("2026-11-24T01:49:40.771Z", System.Globalization.CultureInfo.InvariantCulture), e.Timestamp);
    }

    [Fact]
    public void Parse_MessageEdited_SeqIsTheEditsPositionNotTheMessages()
    {
        var frame = Parse($$$"""
            {"type":"message_edited","payload":{"message":{"id":"01a20b3e-9622-7f2b-a039-409a9457aee2","conversation_id":"{{{C}}}","seq":2},
            "seq":5,"timestamp":"2026-11-24T01:49:40.771Z"}}
            """);

        var e = Assert.IsType<MessageEditedEvent>(frame.Payload);
        Assert.Equal(5, e.Seq);
        Assert.Equal(2, e.Message.Seq);
    }

    [Fact]
    public void Parse_NewMessageThatDoesNotRead_IsAnUnreadableEventAtItsPosition()
    {
        var frame = Parse($$$"""
            {"type":"new_message","payload":{"message":{"id":"01a20b3e-9622-7f2b-a039-409a9457aee2","conversation_id":"{{{C}}}","seq":2,
            "sender_id":"alice","message_type":"text","content":"Hello","created_at":12},"timestamp":"2026-11-24T01:49:40.771Z"}}
            """);

        var e = Assert.IsType<UnreadableEvent>(frame.Payload);
        Assert.Equal((C, 2L, "new_message"), (e.ConversationId, e.Seq, e.Type));
        Assert.Equal(DateTimeOffset.Parse("2026-11-24T01:49:40.771Z", System.Globalization.CultureInfo.InvariantCulture), e.Timestamp);
        Assert.NotEmpty(e.Reason);
    }

    [Fact]
    public void Parse_UnreadableEditPayloadBeforeType_TakesTheEditsPosition()
    {
        var frame = Parse($$$"""
            {"payload":{"message":{"id":"01a20b3e-9622-7f2b-a039-409a9457aee2","conversation_id":"{{{C}}}","seq":2,"content":[1]},
            "seq":5,"timestamp":"2026-11-24T01:49:40.771Z"},"type":"message_edited"}
            """);

        var e = Assert.IsType<UnreadableEvent>(frame.Payload);
        Assert.Equal((C, 5L, "message_edited"), (e.ConversationId, e.Seq, e.Type));
    }

    [Fact]
    public void Parse_UnreadableWithoutAPosition_Fails()
    {
        Assert.Throws<JsonException>(() => Parse("""{"type":"message_deleted","payload":{"conversation_id":"nope","seq":"x"}}"""));
    }

    [Fact]
    public void Parse_PayloadBeforeType_StillReadsThePayload()
    {
        var frame = Parse($$$"""{"payload":{"conversation_id":"{{{C}}}","seq":4},"type":"hidden_event"}""");

        var e = Assert.IsType<HiddenEvent>(frame.Payload);
        Assert.Equal((C, 4L), (e.ConversationId, e.Seq));
    }

    [Fact]
    public void Parse_UnknownType_HasNoPayloadInsteadOfFailing()
    {
        var frame = Parse("""{"type":"presence_v9","payload":{"anything":[1,2,{"x":null}]}}""");

        Assert.Equal("presence_v9", frame.Type);
        Assert.Null(frame.Payload);
    }

    [Fact]
    public void Parse_ErrorWithNumericId_KeepsCodeAndClientMessageId()
    {
        var frame = Parse("""{"type":"error","payload":{"code":"validation_failed","message":"bad","id":7,"client_message_id":"c-1"}}""");

        var error = Assert.IsType<ErrorPayload>(frame.Payload);
        Assert.Equal(("validation_failed", "c-1"), (error.Code, error.ClientMessageId));
        Assert.Equal(7, error.Id!.Value.GetInt32());
    }

    [Fact]
    public void Parse_NoType_Throws()
    {
        Assert.Throws<JsonException>(() => Parse("""{"payload":{}}"""));
    }

    [Fact]
    public void SendMessage_Frame_IsSnakeCaseWithTheGivenFrameId()
    {
        var json = JsonDocument.Parse(ClientFrames.SendMessage(SendMessageRequest.Text(C, "Hi", "c-9"), "frame-9")).RootElement;

        Assert.Equal("send_message", json.GetProperty("type").GetString());
        Assert.Equal("frame-9", json.GetProperty("id").GetString());
        var payload = json.GetProperty("payload");
        Assert.Equal(C, payload.GetProperty("conversation_id").GetGuid());
        Assert.Equal("text", payload.GetProperty("message_type").GetString());
        Assert.Equal("c-9", payload.GetProperty("client_message_id").GetString());
        Assert.False(payload.TryGetProperty("media", out _));
    }

    [Fact]
    public void Ack_Frame_CarriesConversationAndSeq()
    {
        var json = JsonDocument.Parse(ClientFrames.Ack(C, 12)).RootElement;

        Assert.Equal("ack", json.GetProperty("type").GetString());
        Assert.Equal(C, json.GetProperty("payload").GetProperty("conversation_id").GetGuid());
        Assert.Equal(12, json.GetProperty("payload").GetProperty("seq").GetInt64());
    }
}

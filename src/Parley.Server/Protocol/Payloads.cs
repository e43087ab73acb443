using System.Text.Json;
using System.Text.Json.Serialization;
using Parley.Server.Storage;

namespace Parley.Server.Protocol;

// Server -> client payloads. Every conversation event carries conversation_id and its seq.

/// <summary><c>cursor</c>: the stream position a later resume continues from (see docs/delivery.md).</summary>
internal sealed record ConnectedPayload(string ConnectionId, string UserId, string DeviceId, long HeartbeatIntervalMs, bool Acks, string Cursor);

internal sealed record ConversationCreatedPayload(Conversation Conversation, long Seq, DateTimeOffset Timestamp);

/// <summary>The contract of <c>new_message</c>; the frame itself is written by <see cref="MessageFrames"/>, tested against this record.</summary>
internal sealed record NewMessagePayload(Message Message, DateTimeOffset Timestamp);

internal sealed record MessageEditedPayload(Message Message, Guid ConversationId, long Seq, DateTimeOffset Timestamp);

internal sealed record MessageDeletedPayload(Guid MessageId, Guid ConversationId, long Seq, string DeletedBy, DateTimeOffset Timestamp);

/// <summary><c>message_delivered</c> and <c>message_read</c>: the user has received/read everything up to and including the message.</summary>
internal sealed record ReceiptPayload(Guid ConversationId, string UserId, Guid MessageId, long UpToSeq, DateTimeOffset Timestamp);

internal sealed record TypingPayload(Guid ConversationId, string UserId, bool IsTyping, DateTimeOffset Timestamp);

/// <summary><c>presence</c>: a user who shares a conversation with the device's user came online or went offline.</summary>
internal sealed record PresencePayload(string UserId, bool Online, DateTimeOffset? LastSeenAt, DateTimeOffset Timestamp);

internal sealed record ParticipantAddedPayload(Guid ConversationId, long Seq, string UserId, string Role, string AddedBy, DateTimeOffset Timestamp);

internal sealed record ParticipantRemovedPayload(Guid ConversationId, long Seq, string UserId, string RemovedBy, DateTimeOffset Timestamp);

internal sealed record ParticipantUpdatedPayload(Guid ConversationId, long Seq, string UserId, string Role, string UpdatedBy, DateTimeOffset Timestamp);

internal sealed record PongPayload(DateTimeOffset Timestamp);

/// <summary>
/// <see cref="Id"/> is the client frame's id as JSON text (see <see cref="ClientFrame.Id"/>), written as is;
/// <see cref="ClientMessageId"/> names the send that failed (send_message only).
/// </summary>
internal sealed record ErrorPayload(
    string Code, string Message, [property: JsonConverter(typeof(RawJsonConverter))] string? Id, string? ClientMessageId = null);

/// <summary>A position of the conversation whose event the member may not see (it concerns history from before the member joined).</summary>
internal sealed record HiddenEventPayload(Guid ConversationId, long Seq, DateTimeOffset Timestamp);

/// <summary><c>sync_complete</c> and <c>cursor</c>.</summary>
internal sealed record CursorPayload(string Cursor);

internal sealed record SyncResetPayload(string Cursor, string Reason);

/// <summary>The contract of <c>message_ack</c>; the frame itself is written by <see cref="MessageFrames"/>, tested against this record.</summary>
internal sealed record MessageAckPayload(string ClientMessageId, Message Message);

/// <summary>Writes a string that already is a JSON value without quoting it again.</summary>
internal sealed class RawJsonConverter : JsonConverter<string>
{
    public override string Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Raw JSON values are only written.");

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteRawValue(value);
}

// Client -> server payloads: nullable so that a missing field is a clear error.

internal sealed class ReadReceiptFrame
{
    public string? MessageId { get; set; }
}

internal sealed class TypingFrame
{
    public string? ConversationId { get; set; }

    public bool? IsTyping { get; set; }
}

internal sealed class ResumeFrame
{
    public string? Cursor { get; set; }
}

internal sealed class AckFrame
{
    public string? ConversationId { get; set; }

    public long? Seq { get; set; }
}

/// <summary>REST body of POST /conversations/{id}/typing.</summary>
internal sealed class TypingRequest
{
    public bool? IsTyping { get; set; }
}

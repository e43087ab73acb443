using System.Text.Json;
using System.Text.Json.Serialization;

namespace Parley.Client.Protocol;

// Server -> client payloads that are not public events as they are (public events are built from them).

internal sealed record ConnectedPayload(string ConnectionId, string UserId, string DeviceId, long HeartbeatIntervalMs, bool Acks, string? Cursor);

internal sealed record ConversationCreatedPayload(Conversation Conversation, long Seq, DateTimeOffset Timestamp);

internal sealed record NewMessagePayload(Message Message, DateTimeOffset Timestamp);

internal sealed record MessageEditedPayload(Message Message, long Seq, DateTimeOffset Timestamp);

internal sealed record MessageDeletedPayload(Guid MessageId, Guid ConversationId, long Seq, string DeletedBy, DateTimeOffset Timestamp);

internal sealed record ReceiptPayload(Guid ConversationId, string UserId, Guid MessageId, long UpToSeq, DateTimeOffset Timestamp);

internal sealed record TypingPayload(Guid ConversationId, string UserId, bool IsTyping, DateTimeOffset Timestamp);

internal sealed record PresencePayload(string UserId, bool Online, DateTimeOffset? LastSeenAt, DateTimeOffset Timestamp);

internal sealed record ParticipantAddedPayload(Guid ConversationId, long Seq, string UserId, string Role, string AddedBy, DateTimeOffset Timestamp);

internal sealed record ParticipantRemovedPayload(Guid ConversationId, long Seq, string UserId, string RemovedBy, DateTimeOffset Timestamp);

internal sealed record ParticipantUpdatedPayload(Guid ConversationId, long Seq, string UserId, string Role, string UpdatedBy, DateTimeOffset Timestamp);

internal sealed record HiddenEventPayload(Guid ConversationId, long Seq, DateTimeOffset Timestamp);

/// <summary><c>cursor</c> and <c>sync_complete</c>.</summary>
internal sealed record CursorPayload(string Cursor);

internal sealed record SyncResetPayload(string Cursor, string? Reason);

internal sealed record MessageAckPayload(string ClientMessageId, Message Message);

/// <summary><see cref="Id"/> echoes the client frame's id: a string or a number, kept as JSON.</summary>
internal sealed record ErrorPayload(string Code, string? Message, JsonElement? Id, string? ClientMessageId);

/// <summary>A server frame whose payload was read once, straight into its type; <see cref="Payload"/> is null for types this client does not know.</summary>
[JsonConverter(typeof(ServerFrames.Converter))]
internal sealed record ServerFrame(string Type, object? Payload);

internal sealed record SyncPageWire(IReadOnlyList<ServerFrame> Events, string NextCursor, bool HasMore);

internal sealed record SyncCursorWire(string Cursor);

/// <summary>ProblemDetails as the client reads it.</summary>
internal sealed record ProblemWire(int? Status, string? Title, string? Detail, string? Code, Dictionary<string, string[]>? Errors);

// Client -> server payloads and REST bodies.

internal sealed record AckPayload(Guid ConversationId, long Seq);

internal sealed record TypingFramePayload(Guid ConversationId, bool IsTyping);

internal sealed record ReadReceiptPayload(Guid MessageId);

internal sealed record TypingRequest(bool IsTyping);

internal sealed record AddParticipantsRequest(IReadOnlyList<string> UserIds);

internal sealed record UpdateParticipantRequest(string Role);

internal sealed record EmptyPayload;

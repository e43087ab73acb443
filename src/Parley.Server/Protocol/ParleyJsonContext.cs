using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Mvc;
using Parley.Server.Storage;

namespace Parley.Server.Protocol;

/// <summary>
/// All JSON Parley reads and writes, source-generated: snake_case names, nulls written (absent values are
/// <c>null</c> on the wire), timestamps as RFC 3339 UTC. A property given twice is refused (names match without regard
/// to case, so <c>content</c> and <c>Content</c> are the same property): a gateway or moderation filter that read the
/// first copy must not see other content than Parley stores.
/// </summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    NumberHandling = JsonNumberHandling.Strict,
    AllowDuplicateProperties = false,
    Converters = [typeof(UtcTimestampConverter)])]
[JsonSerializable(typeof(Message))]
[JsonSerializable(typeof(MessagePage))]
[JsonSerializable(typeof(MessageEdits))]
[JsonSerializable(typeof(SendMessageRequest))]
[JsonSerializable(typeof(EditMessageRequest))]
[JsonSerializable(typeof(Conversation))]
[JsonSerializable(typeof(ConversationList))]
[JsonSerializable(typeof(Participant))]
[JsonSerializable(typeof(CreateConversationRequest))]
[JsonSerializable(typeof(AddParticipantsRequest))]
[JsonSerializable(typeof(UpdateParticipantRequest))]
[JsonSerializable(typeof(ConnectedPayload))]
[JsonSerializable(typeof(ConversationCreatedPayload))]
[JsonSerializable(typeof(NewMessagePayload))]
[JsonSerializable(typeof(MessageEditedPayload))]
[JsonSerializable(typeof(MessageDeletedPayload))]
[JsonSerializable(typeof(ReceiptPayload))]
[JsonSerializable(typeof(TypingPayload))]
[JsonSerializable(typeof(PresencePayload))]
[JsonSerializable(typeof(UserPresenceView))]
[JsonSerializable(typeof(ParticipantAddedPayload))]
[JsonSerializable(typeof(ParticipantRemovedPayload))]
[JsonSerializable(typeof(ParticipantUpdatedPayload))]
[JsonSerializable(typeof(PongPayload))]
[JsonSerializable(typeof(ErrorPayload))]
[JsonSerializable(typeof(HiddenEventPayload))]
[JsonSerializable(typeof(CursorPayload))]
[JsonSerializable(typeof(SyncResetPayload))]
[JsonSerializable(typeof(MessageAckPayload))]
[JsonSerializable(typeof(ResumeFrame))]
[JsonSerializable(typeof(ReadReceiptFrame))]
[JsonSerializable(typeof(TypingFrame))]
[JsonSerializable(typeof(AckFrame))]
[JsonSerializable(typeof(TypingRequest))]
[JsonSerializable(typeof(ClientConfig))]
[JsonSerializable(typeof(HealthReportResponse))]
[JsonSerializable(typeof(ReadState))]
[JsonSerializable(typeof(SyncPage))]
[JsonSerializable(typeof(CursorResponse))]
[JsonSerializable(typeof(ProblemDetails))]
[JsonSerializable(typeof(HttpValidationProblemDetails))]
internal sealed partial class ParleyJsonContext : JsonSerializerContext;

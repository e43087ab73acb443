using System.Text.Json;
using System.Text.Json.Serialization;

namespace Parley.Client.Protocol;

/// <summary>
/// All JSON the client reads and writes, source-generated: snake_case names; nulls left out of requests
/// (the server reads a missing field as null).
/// </summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(Message))]
[JsonSerializable(typeof(Conversation))]
[JsonSerializable(typeof(Participant))]
[JsonSerializable(typeof(ConversationList))]
[JsonSerializable(typeof(MessagePage))]
[JsonSerializable(typeof(MessageEdits))]
[JsonSerializable(typeof(ReadState))]
[JsonSerializable(typeof(ClientConfig))]
[JsonSerializable(typeof(CreateConversationRequest))]
[JsonSerializable(typeof(SendMessageRequest))]
[JsonSerializable(typeof(EditMessageRequest))]
[JsonSerializable(typeof(AddParticipantsRequest))]
[JsonSerializable(typeof(UpdateParticipantRequest))]
[JsonSerializable(typeof(TypingRequest))]
[JsonSerializable(typeof(ProblemWire))]
[JsonSerializable(typeof(SyncPageWire))]
[JsonSerializable(typeof(SyncCursorWire))]
[JsonSerializable(typeof(ServerFrame))]
[JsonSerializable(typeof(ConnectedPayload))]
[JsonSerializable(typeof(ConversationCreatedPayload))]
[JsonSerializable(typeof(NewMessagePayload))]
[JsonSerializable(typeof(MessageEditedPayload))]
[JsonSerializable(typeof(MessageDeletedPayload))]
[JsonSerializable(typeof(ReceiptPayload))]
[JsonSerializable(typeof(TypingPayload))]
[JsonSerializable(typeof(PresencePayload))]
[JsonSerializable(typeof(UserPresence))]
[JsonSerializable(typeof(ParticipantAddedPayload))]
[JsonSerializable(typeof(ParticipantRemovedPayload))]
[JsonSerializable(typeof(ParticipantUpdatedPayload))]
[JsonSerializable(typeof(HiddenEventPayload))]
[JsonSerializable(typeof(CursorPayload))]
[JsonSerializable(typeof(SyncResetPayload))]
[JsonSerializable(typeof(MessageAckPayload))]
[JsonSerializable(typeof(ErrorPayload))]
[JsonSerializable(typeof(AckPayload))]
[JsonSerializable(typeof(TypingFramePayload))]
[JsonSerializable(typeof(ReadReceiptPayload))]
[JsonSerializable(typeof(EmptyPayload))]
[JsonSerializable(typeof(DeliveryCheckpoint))]
internal sealed partial class WireJson : JsonSerializerContext;

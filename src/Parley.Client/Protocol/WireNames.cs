namespace Parley.Client.Protocol;

/// <summary>Wire names of WebSocket frames (docs/websocket.md, docs/delivery.md): one place, reviewed like public API.</summary>
internal static class FrameTypes
{
    // server -> client
    public const string Connected = "connected";
    public const string ConversationCreated = "conversation_created";
    public const string NewMessage = "new_message";
    public const string MessageEdited = "message_edited";
    public const string MessageDeleted = "message_deleted";
    public const string MessageDelivered = "message_delivered";
    public const string MessageRead = "message_read";
    public const string Typing = "typing";
    public const string Presence = "presence";
    public const string ParticipantAdded = "participant_added";
    public const string ParticipantRemoved = "participant_removed";
    public const string ParticipantUpdated = "participant_updated";
    public const string HiddenEvent = "hidden_event";
    public const string Cursor = "cursor";
    public const string SyncComplete = "sync_complete";
    public const string SyncReset = "sync_reset";
    public const string MessageAck = "message_ack";
    public const string Pong = "pong";
    public const string Error = "error";

    // client -> server
    public const string Ack = "ack";
    public const string SendMessage = "send_message";
    public const string ReadReceipt = "read_receipt";
    public const string Ping = "ping";

    public const string SubprotocolV1 = "parley.v1";
}

/// <summary>WebSocket close codes Parley uses and what the client does about each (docs/websocket.md).</summary>
internal static class CloseCodes
{
    public const int Normal = 1000;
    public const int GoingAway = 1001;
    public const int MessageTooBig = 1009;
    public const int SlowConsumer = 4001;
    public const int TokenExpired = 4003;
}

namespace Parley.Server.Protocol;

/// <summary>
/// Wire names of WebSocket frames (<c>{"type", "payload"}</c>). Public API: documented in docs/websocket.md.
/// </summary>
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
    public const string Pong = "pong";
    public const string Error = "error";
    public const string HiddenEvent = "hidden_event";
    public const string SyncComplete = "sync_complete";
    public const string SyncReset = "sync_reset";
    public const string Cursor = "cursor";
    public const string MessageAck = "message_ack";

    // client -> server
    public const string ReadReceipt = "read_receipt";
    public const string Ping = "ping";
    public const string Ack = "ack";
    public const string Resume = "resume";
    public const string SendMessage = "send_message";

    /// <summary>The optional subprotocol; a client that offers none speaks v1.</summary>
    public const string SubprotocolV1 = "parley.v1";

    /// <summary>Where the WebSocket is served (the only path where a token may come in the query).</summary>
    public const string WebSocketPath = "/ws";
}

/// <summary>WebSocket close codes Parley uses (documented in docs/websocket.md).</summary>
internal static class CloseCodes
{
    /// <summary>The client closed; the server echoes its close.</summary>
    public const int Normal = 1000;

    /// <summary>The server is shutting down (or restarting): reconnect, possibly to another instance.</summary>
    public const int GoingAway = 1001;

    /// <summary>The client sent a message larger than Limits:MaxFrameBytes.</summary>
    public const int MessageTooBig = 1009;

    /// <summary>Storage failed while the server caught the device up: resume again after a short wait.</summary>
    public const int TryAgainLater = 1013;

    /// <summary>The client did not read its frames fast enough; its send queue overflowed. Reconnect.</summary>
    public const int SlowConsumer = 4001;

    /// <summary>The token the connection was opened with expired; reconnect with a fresh one.</summary>
    public const int TokenExpired = 4003;
}

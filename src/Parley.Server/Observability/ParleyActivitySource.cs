using System.Diagnostics;

namespace Parley.Server.Observability;

/// <summary>
/// Parley's spans (docs/operations.md, "Traces"). Nobody listens unless an exporter is configured
/// (Telemetry:Otlp:Endpoint): <see cref="ActivitySource.StartActivity(string, ActivityKind)"/> then returns null and
/// costs a branch, so call sites use <c>?.</c> and pass only constant names. Tags carry ids and types, never content.
/// </summary>
internal static class ParleyActivitySource
{
    public const string Name = "Parley.Server";

    public static readonly ActivitySource Source = new(Name);

    /// <summary>Span names (low cardinality: what varies goes into tags).</summary>
    public static class Spans
    {
        /// <summary>A message sent (REST or <c>send_message</c>): validation, the store commit, the fan-out.</summary>
        public const string MessageSend = "parley.message.send";

        /// <summary>The store transaction of a send (child of <see cref="MessageSend"/>).</summary>
        public const string Commit = "parley.store.commit";

        /// <summary>Handing the committed change to the fan-out (child of <see cref="MessageSend"/>).</summary>
        public const string Fanout = "parley.fanout";

        /// <summary>One client frame handled by the WebSocket endpoint.</summary>
        public const string WebSocketFrame = "parley.ws.frame";
    }

    /// <summary>Tag names.</summary>
    public static class Tags
    {
        public const string ConversationId = "parley.conversation.id";
        public const string MessageType = "parley.message.type";
        public const string MessageId = "parley.message.id";
        public const string FrameType = "parley.frame.type";
        public const string ConnectionId = "parley.connection.id";
        public const string Recipients = "parley.fanout.recipients";
        public const string ErrorCode = "parley.error.code";
    }
}

using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Realtime;

/// <summary>Frames addressed to one socket (not fanned out).</summary>
internal static class Frames
{
    public static OutboundFrame Error(string code, string message, string? id, string? clientMessageId = null) =>
        new(FrameWriter.Serialize(FrameTypes.Error, new ErrorPayload(code, message, id, clientMessageId), ParleyJsonContext.Default.ErrorPayload), FrameTypes.Error);

    public static OutboundFrame Pong(DateTimeOffset now) =>
        new(FrameWriter.Serialize(FrameTypes.Pong, new PongPayload(now), ParleyJsonContext.Default.PongPayload), FrameTypes.Pong);

    public static OutboundFrame Connected(ConnectedPayload payload) =>
        new(FrameWriter.Serialize(FrameTypes.Connected, payload, ParleyJsonContext.Default.ConnectedPayload), FrameTypes.Connected);

    /// <summary><c>cursor</c> or <c>sync_complete</c> (<paramref name="type"/>, a FrameTypes constant).</summary>
    public static OutboundFrame Cursor(string type, string cursor) =>
        new(FrameWriter.Serialize(type, new CursorPayload(cursor), ParleyJsonContext.Default.CursorPayload), type);

    public static OutboundFrame SyncReset(string cursor, string reason) =>
        new(FrameWriter.Serialize(FrameTypes.SyncReset, new SyncResetPayload(cursor, reason), ParleyJsonContext.Default.SyncResetPayload), FrameTypes.SyncReset);

    public static OutboundFrame MessageAck(string clientMessageId, Message message) =>
        new(MessageFrames.MessageAck(clientMessageId, message), FrameTypes.MessageAck);
}

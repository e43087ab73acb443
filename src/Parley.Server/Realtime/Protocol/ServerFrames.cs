using Parley.Server.Hosting;

namespace Parley.Server.Realtime.Protocol;

/// <summary>Frames addressed to one socket (not fanned out).</summary>
internal static class Frames
{
    public static OutboundFrame Error(string code, string message, string? id) =>
        new(FrameWriter.Serialize(FrameTypes.Error, new ErrorPayload(code, message, id), ParleyJsonContext.Default.ErrorPayload));

    public static OutboundFrame Pong(DateTimeOffset now) =>
        new(FrameWriter.Serialize(FrameTypes.Pong, new PongPayload(now), ParleyJsonContext.Default.PongPayload));

    public static OutboundFrame Connected(ConnectedPayload payload) =>
        new(FrameWriter.Serialize(FrameTypes.Connected, payload, ParleyJsonContext.Default.ConnectedPayload));
}

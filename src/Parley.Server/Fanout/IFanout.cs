using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// The fan-out seam: carries one serialized frame to every connected device of a set of users, wherever
/// those devices are connected. In-process (default, one instance) or Redis pub/sub (several instances).
/// Implementations must keep the order of <see cref="PublishAsync"/> calls per publisher, never block on a
/// slow socket, and never deliver to users outside <see cref="FanoutMessage.UserIds"/>.
/// </summary>
internal interface IFanout
{
    ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken);
}

/// <summary>
/// A frame for every device of <see cref="UserIds"/> except those of <see cref="ExceptUserId"/> (typing goes to the
/// other members only). The frame's bytes are serialized once and shared by every socket.
/// </summary>
internal sealed record FanoutMessage(IReadOnlyList<string> UserIds, OutboundFrame Frame, string? ExceptUserId = null);

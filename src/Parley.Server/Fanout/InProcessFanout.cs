using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>One instance: every connected device is in this process's <see cref="ConnectionHub"/>.</summary>
internal sealed class InProcessFanout(ConnectionHub hub) : IFanout
{
    public ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken)
    {
        hub.Deliver(message.UserIds, message.Frame, message.ExceptUserId);
        return ValueTask.CompletedTask;
    }
}

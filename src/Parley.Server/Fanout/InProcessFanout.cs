using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// One instance: every connected device is in this process's <see cref="ConnectionHub"/>. Writers of a conversation
/// publish under its lock, so the hub gets its frames in seq order without a gate.
/// </summary>
internal sealed class InProcessFanout(ConnectionHub hub) : IFanout
{
    public ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken)
    {
        foreach (var part in message.Parts)
        {
            hub.Deliver(part.UserIds, part.Frame, message.ExceptUserId);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask SubscribeAsync(string userId, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public void Unsubscribe(string userId)
    {
    }
}

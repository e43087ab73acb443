using System.Threading.Channels;

namespace Parley.Client.Realtime;

/// <summary>
/// Wakes one loop: <see cref="Set"/> calls made while the loop is busy coalesce into one wake-up, so a loop
/// that looks at all its work on each wake-up never misses any. Thread-safe; one waiter.
/// </summary>
internal sealed class Signal
{
    private readonly Channel<bool> _channel = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    public void Set() => _channel.Writer.TryWrite(true);

    /// <summary>Waits until <see cref="Set"/> was called (since the last wait returned).</summary>
    public async Task WaitAsync(CancellationToken cancellationToken) => await _channel.Reader.ReadAsync(cancellationToken);

    /// <summary>Waits until <see cref="Set"/> was called or, when given, <paramref name="timeout"/> passed (due work is the caller's to find).</summary>
    public async Task WaitAsync(TimeSpan? timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        if (timeout is not { } wait)
        {
            await WaitAsync(cancellationToken);
            return;
        }

        using var timer = new CancellationTokenSource(wait, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            await _channel.Reader.ReadAsync(linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The timeout.
        }
    }
}

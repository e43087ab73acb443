

namespace Parley.Server.Conversations;

/// <summary>
/// In-process mutual exclusion per conversation (striped: conversations that hash to the same stripe share
/// a lock). Held from the start of a write transaction until its events are handed to the fan-out, so every
/// socket receives a conversation's events in the order their seqs were committed. Handing to the fan-out
/// never waits on a socket, so the lock is held for one transaction plus a few enqueues.
/// </summary>
internal sealed class ConversationLocks : IDisposable
{
    private const int Stripes = 1024;
    private readonly SemaphoreSlim[] _stripes = Enumerable.Range(0, Stripes).Select(_ => new SemaphoreSlim(1, 1)).ToArray();

    public async ValueTask<Releaser> AcquireAsync(Guid conversationId, CancellationToken cancellationToken)
    {
        var stripe = _stripes[(conversationId.GetHashCode() & int.MaxValue) % Stripes];
        await stripe.WaitAsync(cancellationToken);
        return new Releaser(stripe);
    }

    public void Dispose()
    {
        foreach (var stripe in _stripes)
        {
            stripe.Dispose();
        }
    }

    internal readonly struct Releaser(SemaphoreSlim stripe) : IDisposable
    {
        public void Dispose() => stripe.Release();
    }
}

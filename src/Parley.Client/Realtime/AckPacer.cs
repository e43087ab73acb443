namespace Parley.Client.Realtime;

/// <summary>
/// Which cumulative acks are due and how fast they may go out (docs/client.md, "Acknowledgements"): per
/// conversation the highest <c>seq</c> the app consumed; an ack is due when it moved; at most
/// <see cref="MaxAcksPerWindow"/> ack frames per <see cref="Window"/>; acks sent on a socket that died are due
/// again on the next one.
/// </summary>
/// <remarks>
/// Concurrency: thread-safe under <c>_lock</c>, which guards every field. The app's event reader reports what it
/// consumed, the maintenance loop flushes, the receive loop reports a new socket (inside the outbox lock, so that
/// a flush never straddles two sockets). Never held across an await; <see cref="Flush"/> calls its delegate under
/// it, which must not block (a queue write).
/// </remarks>
internal sealed class AckPacer(TimeProvider time)
{
    /// <summary>
    /// Ack frames per <see cref="Window"/>: the server limits ack frames per socket (Realtime:AckFramesPerSecond,
    /// 100, bursts of 1,000) and an ack names one conversation, so a device catching up on thousands of
    /// conversations spreads its acks instead of having them refused.
    /// </summary>
    public const int MaxAcksPerWindow = 80;

    public static readonly TimeSpan Window = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly Dictionary<Guid, long> _consumed = [];
    private readonly HashSet<Guid> _due = [];
    private readonly HashSet<Guid> _sentOnSocket = [];
    private long _windowStart;
    private int _windowCount;

    /// <summary>Some conversation has an ack due.</summary>
    public bool HasDue
    {
        get
        {
            lock (_lock)
            {
                return _due.Count > 0;
            }
        }
    }

    /// <summary>The positions of a stored checkpoint: consumed before this run, never acknowledged again.</summary>
    public void Restore(IReadOnlyDictionary<Guid, long> positions)
    {
        lock (_lock)
        {
            foreach (var (conversationId, seq) in positions)
            {
                _consumed[conversationId] = seq;
            }
        }
    }

    /// <summary>The app consumed <paramref name="e"/>; returns whether an ack became due (time to wake the flusher).</summary>
    /// <param name="e">The event (a hidden one too: it fills a position).</param>
    /// <param name="userId">This device's user: after its own removal the server would refuse the ack.</param>
    public bool Consumed(ConversationEvent e, string? userId)
    {
        lock (_lock)
        {
            if (e.Seq <= _consumed.GetValueOrDefault(e.ConversationId))
            {
                return false;
            }

            _consumed[e.ConversationId] = e.Seq;
            if (e is ParticipantRemovedEvent removed && removed.UserId == userId)
            {
                // No longer a member: the server would refuse the ack.
                _due.Remove(e.ConversationId);
                return false;
            }

            _due.Add(e.ConversationId);
            return true;
        }
    }

    /// <summary>A sync reset: positions start over, nothing is due.</summary>
    public void Forget()
    {
        lock (_lock)
        {
            _consumed.Clear();
            _due.Clear();
            _sentOnSocket.Clear();
        }
    }

    /// <summary>A new socket: acks queued on the previous one may have died with it; repeating one is harmless (a watermark).</summary>
    public void SocketOpened()
    {
        lock (_lock)
        {
            _due.UnionWith(_sentOnSocket);
            _sentOnSocket.Clear();
        }
    }

    /// <summary>
    /// Hands due acks (conversation, highest consumed seq) to <paramref name="trySend"/>, as many as the current
    /// window still allows however many flushes it sees; one it refuses (the socket's queue is full) stays due with
    /// the rest. Returns whether acks remain due.
    /// </summary>
    public bool Flush(Func<Guid, long, bool> trySend)
    {
        lock (_lock)
        {
            if (_due.Count == 0)
            {
                return false;
            }

            var now = time.GetTimestamp();
            if (_windowStart == 0 || time.GetElapsedTime(_windowStart, now) >= Window)
            {
                _windowStart = now;
                _windowCount = 0;
            }

            foreach (var conversationId in _due.Take(MaxAcksPerWindow - _windowCount).ToList())
            {
                if (_consumed.TryGetValue(conversationId, out var seq) && seq > 0)
                {
                    if (!trySend(conversationId, seq))
                    {
                        return true;
                    }

                    _sentOnSocket.Add(conversationId);
                    _windowCount++;
                }

                _due.Remove(conversationId);
            }

            return _due.Count > 0;
        }
    }
}

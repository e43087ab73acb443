namespace Parley.Server.Sync;

/// <summary>
/// Which sequenced events of each conversation a socket's device holds, exactly: a cursor may only claim
/// events the socket was given, and with several instances (or a lost fan-out message) a socket can get seq
/// N+1 without N. Per conversation: a floor (every visible event up to it is held) and the seqs sent above it.
/// Confirming a cursor raises the floors and forgets the seqs below them, so the sets stay small.
/// </summary>
internal sealed class SentPositions
{
    private readonly Lock _lock = new();
    private readonly Dictionary<Guid, Log> _logs = [];

    /// <summary>
    /// Records a sequenced frame written to the socket. <paramref name="exact"/> is false for a socket that does
    /// not follow cursors: only the newest seq is kept (nothing is ever claimed from the gaps' absence).
    /// </summary>
    public void Record(Guid conversationId, long seq, bool exact)
    {
        lock (_lock)
        {
            var log = Get(conversationId);
            if (seq <= log.Floor)
            {
                return;
            }

            if (exact)
            {
                log.Above.Add(seq);
            }
            else
            {
                log.Floor = seq;
                log.Above.Clear();
            }
        }
    }

    /// <summary>The device holds <paramref name="seq"/> of the conversation (it was written, or lies under a confirmed floor).</summary>
    public bool Holds(Guid conversationId, long seq)
    {
        lock (_lock)
        {
            return _logs.TryGetValue(conversationId, out var log) && (seq <= log.Floor || log.Above.Contains(seq));
        }
    }

    /// <summary>Some seq was written that no confirmation (cursor) covers yet.</summary>
    public bool HasUnconfirmed
    {
        get
        {
            lock (_lock)
            {
                return _logs.Values.Any(l => l.Above.Count > 0);
            }
        }
    }

    /// <summary>Everything of the conversation up to <paramref name="seq"/> is held (covered by a cursor, or known to the device).</summary>
    public void Confirm(Guid conversationId, long seq)
    {
        lock (_lock)
        {
            var log = Get(conversationId);
            if (seq > log.Floor)
            {
                log.Floor = seq;
                log.Above.RemoveWhere(s => s <= seq);
            }
        }
    }

    /// <summary>Forgets everything: the device resumes from a cursor of its own, so what the socket assumed it holds no longer applies.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _logs.Clear();
        }
    }

    private Log Get(Guid conversationId)
    {
        if (!_logs.TryGetValue(conversationId, out var log))
        {
            _logs[conversationId] = log = new Log();
        }

        return log;
    }

    private sealed class Log
    {
        public long Floor;

        public SortedSet<long> Above { get; } = [];
    }
}

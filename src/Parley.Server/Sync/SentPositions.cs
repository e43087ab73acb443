namespace Parley.Server.Sync;

/// <summary>
/// Which sequenced events of each conversation a socket's device holds, exactly: a cursor may only claim
/// events the socket was given, and with several instances (or a lost fan-out message) a socket can get seq
/// N+1 without N. Per conversation: a floor (every visible event up to it is held) and the seqs written above
/// it, as ranges of consecutive seqs. Confirming a cursor raises the floors and forgets the ranges below them.
/// A socket that does not follow cursors is recorded just as exactly (it may start to, with its first
/// <c>ack</c>): its live events arrive in order, so each conversation keeps one range, plus one per gap.
/// </summary>
internal sealed class SentPositions
{
    private readonly Lock _lock = new();
    private readonly Dictionary<Guid, Log> _logs = [];

    /// <summary>Records a sequenced frame written to the socket.</summary>
    public void Record(Guid conversationId, long seq)
    {
        lock (_lock)
        {
            var log = Get(conversationId);
            if (seq > log.Floor)
            {
                log.Add(seq);
            }
        }
    }

    /// <summary>The device holds <paramref name="seq"/> of the conversation (it was written, or lies under a confirmed floor).</summary>
    public bool Holds(Guid conversationId, long seq)
    {
        lock (_lock)
        {
            return _logs.TryGetValue(conversationId, out var log) && (seq <= log.Floor || log.Contains(seq));
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
                log.TrimTo(seq);
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

    /// <summary>The ranges kept for a conversation (for tests: a socket without cursors must not grow without bound).</summary>
    internal int RangeCount(Guid conversationId)
    {
        lock (_lock)
        {
            return _logs.TryGetValue(conversationId, out var log) ? log.Above.Count : 0;
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

        /// <summary>Disjoint, non-adjacent ranges of written seqs above the floor, in ascending order.</summary>
        public List<(long From, long To)> Above { get; } = [];

        public bool Contains(long seq)
        {
            var i = IndexAfter(seq) - 1; // the last range starting at or below seq
            return i >= 0 && Above[i].To >= seq;
        }

        public void Add(long seq)
        {
            var next = IndexAfter(seq);
            var previous = next - 1;
            if (previous >= 0 && Above[previous].To >= seq)
            {
                return; // already held
            }

            var joinsPrevious = previous >= 0 && Above[previous].To == seq - 1;
            var joinsNext = next < Above.Count && Above[next].From == seq + 1;
            if (joinsPrevious && joinsNext)
            {
                Above[previous] = (Above[previous].From, Above[next].To);
                Above.RemoveAt(next);
            }
            else if (joinsPrevious)
            {
                Above[previous] = (Above[previous].From, seq);
            }
            else if (joinsNext)
            {
                Above[next] = (seq, Above[next].To);
            }
            else
            {
                Above.Insert(next, (seq, seq));
            }
        }

        /// <summary>Drops what the floor now covers.</summary>
        public void TrimTo(long floor)
        {
            var covered = 0;
            while (covered < Above.Count && Above[covered].To <= floor)
            {
                covered++;
            }

            Above.RemoveRange(0, covered);
            if (Above.Count > 0 && Above[0].From <= floor)
            {
                Above[0] = (floor + 1, Above[0].To);
            }
        }

        // The index of the first range starting above seq.
        private int IndexAfter(long seq)
        {
            int low = 0, high = Above.Count;
            while (low < high)
            {
                var middle = (low + high) >>> 1;
                if (Above[middle].From <= seq)
                {
                    low = middle + 1;
                }
                else
                {
                    high = middle;
                }
            }

            return low;
        }
    }
}

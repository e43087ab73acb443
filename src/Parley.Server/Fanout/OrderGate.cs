using System.Collections.Concurrent;
using Parley.Server.Observability;
using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// Hands this instance's sockets each conversation's sequenced frames in seq order when they come from several
/// publishers (this instance and others, through Redis), whose publications of consecutive seqs may race.
/// Per conversation it remembers the next seq it expects:
/// <list type="bullet">
/// <item>the expected seq goes out at once, followed by held successors;</item>
/// <item>a seq further ahead is held while a recipient here has been connected since before the gap began (it should
/// have had the missing events); if they do not arrive within the hold time they are read from the store for those
/// recipients (<see cref="IGapFiller"/>), sent, and the held frames follow;</item>
/// <item>a seq ahead for which no recipient here was connected all along is no gap: the instance simply did not hold
/// the conversation's members meanwhile. It goes out at once and becomes the new expectation;</item>
/// <item>an older seq (late, or ahead of the expectation's start) is passed on: a socket that already wrote a newer
/// seq of the conversation skips it, and the cursor check gives it to devices with cursors.</item>
/// <item>the expectation is primed with the conversation's last seq when a member's socket subscribes
/// (<see cref="Prime"/>); a conversation without one (new here) holds its first frame other than seq 1 for a short
/// while (<see cref="UnknownHold"/>) in case a predecessor is racing it, then goes on from the lowest seq it got.</item>
/// <item>a conversation quiet for ten minutes keeps only its expectation (the next seq and when the last frame went
/// out: a dormant entry of about 60 bytes, at most <see cref="MaxDormant"/> of them, the oldest dropped first); its
/// next frame or catch-up takes it up again, so a gap after a lull is held and read back like any other.</item>
/// </list>
/// Unsequenced frames (receipts, typing) pass straight through. Frames go to the hub under the conversation's
/// state lock, which orders them; the hub never blocks.
/// </summary>
internal sealed partial class OrderGate : IDisposable
{
    // A conversation without frames for this long gives up its full state and keeps only its expectation (dormant).
    private static readonly TimeSpan Idle = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Dormant expectations kept at most (about 60 bytes each: 6 MB at this bound). Beyond it the oldest go first; a
    /// conversation that lost its expectation this way starts again as a new one (<see cref="UnknownHold"/>).
    /// </summary>
    public const int MaxDormant = 100_000;

    /// <summary>How long the first frame of a conversation without an expectation waits for a racing predecessor.</summary>
    public static readonly TimeSpan UnknownHold = TimeSpan.FromMilliseconds(30);

    // Events read back per gap: a larger gap is left to the cursor check and resume.
    private const int MaxGap = 500;

    private readonly ConcurrentDictionary<Guid, ConversationOrder> _conversations = new();
    private readonly ConcurrentDictionary<Guid, ConversationOrder> _waiting = new();

    // Expectations of conversations quiet for Idle: the recipients here may still be connected, and a frame lost after
    // the lull (or racing its successor) must still count as a gap. Guarded by its own lock, taken inside an order's lock
    // (eviction) or alone (taking an entry up again): a conversation is in exactly one of the two dictionaries.
    private readonly Dictionary<Guid, Dormant> _dormant = [];
    private readonly Lock _dormantLock = new();
    private readonly int _maxDormant;
    private readonly ConnectionHub _hub;
    private readonly IGapFiller _filler;
    private readonly TimeProvider _time;
    private readonly TimeSpan _hold;
    private readonly ParleyMetrics _metrics;
    private readonly ILogger<OrderGate> _logger;
    private readonly ITimer _sweep;
    private long _lastEviction;

    public OrderGate(
        ConnectionHub hub, IGapFiller filler, TimeProvider time, TimeSpan hold, ParleyMetrics metrics, ILogger<OrderGate> logger, int maxDormant = MaxDormant)
    {
        _maxDormant = maxDormant;
        _hub = hub;
        _filler = filler;
        _time = time;
        _hold = hold;
        _metrics = metrics;
        _logger = logger;
        _lastEviction = time.GetTimestamp();
        var tick = TimeSpan.FromTicks(Math.Clamp(hold.Ticks / 4, TimeSpan.FromMilliseconds(5).Ticks, UnknownHold.Ticks / 3));
        _sweep = time.CreateTimer(_ => Sweep(), null, tick, tick);
    }

    /// <summary>Conversations with frames held for a missing predecessor (for tests and metrics).</summary>
    public int Waiting => _waiting.Count;

    /// <summary>Conversations whose full state is kept (frames went out in the last ten minutes, or primed since).</summary>
    public int Tracked => _conversations.Count;

    /// <summary>Conversations quiet for ten minutes whose expectation alone is kept.</summary>
    public int DormantCount
    {
        get
        {
            lock (_dormantLock)
            {
                return _dormant.Count;
            }
        }
    }

    /// <summary>
    /// A member's socket subscribed: the conversation's seq was <paramref name="lastSeq"/> when read, after the
    /// subscription (later events reach this instance). Sets the expectation of a conversation that has none.
    /// </summary>
    public void Prime(Guid conversationId, long lastSeq)
    {
        while (true)
        {
            var order = GetOrResume(conversationId);
            lock (order)
            {
                if (order.Forgotten)
                {
                    continue;
                }

                if (order.Next == 0 && order.Held.Count == 0)
                {
                    order.Next = lastSeq + 1;
                    order.LastFrameAt = _time.GetTimestamp();
                }
                else if (lastSeq + 1 == order.Next && order.Held.Count == 0 && !order.Filling)
                {
                    // The expectation is the conversation's own: the new socket's recipients count from now.
                    order.LastFrameAt = _time.GetTimestamp();
                }
                else if (lastSeq + 1 > order.PrimedNext)
                {
                    // An expectation of the conversation's own: used if the frames in between turn out to have been
                    // for nobody here (the sockets that had them left before the new one came).
                    order.PrimedNext = lastSeq + 1;
                    order.PrimedAt = _time.GetTimestamp();
                }

                return;
            }
        }
    }

    /// <summary>
    /// Frames for this instance may have been lost meanwhile (Redis was unreachable), and the conversation's last seq is
    /// now <paramref name="lastSeq"/>: what its expectation still waits for is read back from the store for those of
    /// <paramref name="users"/> (members with sockets here) who were connected all along, as a gap is; the others'
    /// devices find it at their cursor check. A conversation without an expectation here is left to the cursor check.
    /// </summary>
    public void CatchUp(Guid conversationId, long lastSeq, IReadOnlyCollection<string> users)
    {
        while (true)
        {
            if (!_conversations.TryGetValue(conversationId, out var order) && (order = Resume(conversationId, create: false)) is null)
            {
                return;
            }

            lock (order)
            {
                if (order.Forgotten)
                {
                    continue; // made dormant between the lookup and the lock: take it up again
                }

                if (order.Filling || order.Next == 0 || order.Held.Count > 0)
                {
                    // Busy with a gap (or a brief wait): caught up once the frames held now have gone out.
                    order.CatchUpTo = Math.Max(order.CatchUpTo, lastSeq);
                    order.CatchUpUsers = [.. (order.CatchUpUsers ?? []).Union(users, StringComparer.Ordinal)];
                    return;
                }

                StartCatchUp(conversationId, order, lastSeq, users);
                return;
            }
        }
    }

    // Under the order's lock, with nothing held or being read: reads (Next, lastSeq] back for the users connected all along.
    private void StartCatchUp(Guid conversationId, ConversationOrder order, long lastSeq, IEnumerable<string> users)
    {
        if (lastSeq < order.Next)
        {
            return;
        }

        string[] continuous = [.. users.Where(u => _hub.ConnectedSince(u) is { } connected && connected <= order.LastFrameAt)];
        if (continuous.Length == 0 || lastSeq - order.Next >= MaxGap)
        {
            Log.GapSkipped(_logger, conversationId, order.Next, lastSeq);
            return;
        }

        order.Filling = true;
        _ = FillAsync(conversationId, order, order.Next - 1, lastSeq, continuous);
    }

    public void Offer(FanoutMessage message)
    {
        if (message.ConversationId is not { } conversationId)
        {
            Deliver(message);
            return;
        }

        var seq = message.Seq;
        while (true)
        {
            var order = GetOrResume(conversationId);
            lock (order)
            {
                if (order.Forgotten)
                {
                    continue; // evicted between the lookup and the lock: take the new state
                }

                var now = _time.GetTimestamp();
                if (order.Next == 0 && (seq > 1 || order.Held.Count > 0))
                {
                    // No expectation yet: wait briefly for a racing predecessor (see UnknownHold).
                    order.Held[seq] = message;
                    if (order.HeldSince == 0)
                    {
                        order.HeldSince = now;
                        _waiting[conversationId] = order;
                    }

                    return;
                }

                if (order.Filling || (order.Next != 0 && seq > order.Next))
                {
                    if (!order.Filling && !AnyConnectedSince(message, order.LastFrameAt) && order.PrimedNext != 0 && order.PrimedNext >= order.Next)
                    {
                        // Nobody here had the frames since the last one, but a socket subscribed since: go on from
                        // what the conversation had then.
                        order.Next = order.PrimedNext;
                        order.LastFrameAt = Math.Max(order.LastFrameAt, order.PrimedAt);
                    }

                    if (!order.Filling && seq <= order.Next)
                    {
                        // The primed expectation reaches this frame: it goes out below.
                    }
                    else if (!order.Filling && !AnyConnectedSince(message, order.LastFrameAt))
                    {
                        // Nobody here should have had the frames in between. Frames held for a recipient who has
                        // left go out first, in order, to whoever is here now.
                        FlushHeldBelow(conversationId, order, seq);
                        if (AnyConnected(message))
                        {
                            // A recipient connected since the last frame whose socket may not be primed yet (its
                            // read of the last seqs is still running): a predecessor racing this frame is one it
                            // should get. Wait for it briefly, as for a conversation without an expectation.
                            order.Next = 0;
                            order.PrimedNext = 0; // only a socket primed during the wait counts (see Sweep)
                            order.Held[seq] = message;
                            order.HeldSince = now;
                            _waiting[conversationId] = order;
                            return;
                        }

                        // Nobody here at all: start again from this one.
                        order.Next = seq;
                    }
                    else
                    {
                        order.Held[seq] = message;
                        if (order.HeldSince == 0)
                        {
                            order.HeldSince = now;
                            _waiting[conversationId] = order;
                        }

                        return;
                    }
                }

                order.LastFrameAt = now;
                Deliver(message);
                if (seq >= order.Next)
                {
                    order.Next = seq + 1;
                    DrainHeld(conversationId, order);
                }
                else
                {
                    _metrics.FanoutLate();
                }

                return;
            }
        }
    }

    public void Dispose() => _sweep.Dispose();

    private void Deliver(FanoutMessage message)
    {
        foreach (var part in message.Parts)
        {
            _hub.Deliver(part.UserIds, part.Frame, message.ExceptUserId);
        }
    }

    /// <summary>Whether a recipient of <paramref name="message"/> has a socket here.</summary>
    private bool AnyConnected(FanoutMessage message) =>
        message.Parts.SelectMany(p => p.UserIds).Any(u => u != message.ExceptUserId && _hub.ConnectedSince(u) is not null);

    /// <summary>Whether a recipient of <paramref name="message"/> has had sockets here since <paramref name="since"/>.</summary>
    private bool AnyConnectedSince(FanoutMessage message, long since) => ContinuousRecipients(message, since).Any();

    private IEnumerable<string> ContinuousRecipients(FanoutMessage message, long since) =>
        message.Parts.SelectMany(p => p.UserIds)
            .Where(u => u != message.ExceptUserId && _hub.ConnectedSince(u) is { } connected && connected <= since);

    /// <summary>
    /// Sends the held frames that now follow in order. Held seqs the expectation has passed (they arrived while a
    /// gap was read back) go out first, in order, like any late frame: the read-back reached only the recipients
    /// connected all along, and a socket that already wrote the seq skips the copy.
    /// </summary>
    private void DrainHeld(Guid conversationId, ConversationOrder order)
    {
        while (order.Held.Count > 0)
        {
            var (first, message) = order.Held.First();
            if (first < order.Next)
            {
                order.Held.Remove(first);
                Deliver(message);
                _metrics.FanoutLate();
                continue;
            }

            if (first != order.Next)
            {
                break;
            }

            order.Held.Remove(first);
            Deliver(message);
            order.Next = first + 1;
        }

        if (order.Held.Count == 0)
        {
            EndWait(conversationId, order);
            if (order.CatchUpUsers is { } users && !order.Filling)
            {
                // A catch-up that came while this gap was open.
                order.CatchUpUsers = null;
                StartCatchUp(conversationId, order, order.CatchUpTo, users);
            }
        }
        else
        {
            order.HeldSince = _time.GetTimestamp(); // a new gap: its own wait
        }
    }

    /// <summary>Sends the held frames below <paramref name="seq"/>, in order, before the expectation jumps to it.</summary>
    private void FlushHeldBelow(Guid conversationId, ConversationOrder order, long seq)
    {
        if (order.Held.Count == 0)
        {
            return;
        }

        while (order.Held.Count > 0 && order.Held.First() is var (first, message) && first < seq)
        {
            order.Held.Remove(first);
            Deliver(message);
        }

        if (order.Held.Count == 0)
        {
            EndWait(conversationId, order);
        }
    }

    /// <summary>Nothing is held any more: the conversation no longer waits (and the sweep no longer looks at it).</summary>
    private void EndWait(Guid conversationId, ConversationOrder order)
    {
        order.HeldSince = 0;
        _waiting.TryRemove(new KeyValuePair<Guid, ConversationOrder>(conversationId, order));
    }

    private void Sweep()
    {
        var now = _time.GetTimestamp();
        foreach (var (conversationId, order) in _waiting)
        {
            lock (order)
            {
                if (order.Next == 0 && order.HeldSince != 0)
                {
                    if (_time.GetElapsedTime(order.HeldSince, now) >= UnknownHold)
                    {
                        var lowest = order.Held.First().Key;
                        order.LastFrameAt = now;
                        if (order.PrimedNext != 0 && order.PrimedNext < lowest)
                        {
                            // A socket here read the conversation's last seq meanwhile: the seqs from there to the lowest
                            // held are ones its device should get, a gap like any other (held, then read back).
                            order.Next = order.PrimedNext;
                            order.HeldSince = now;
                            continue;
                        }

                        // Nothing earlier came: start from the lowest seq held.
                        order.Next = lowest;
                        DrainHeld(conversationId, order);
                    }

                    continue;
                }

                if (order.Filling || order.HeldSince == 0 || _time.GetElapsedTime(order.HeldSince, now) < _hold)
                {
                    continue;
                }

                var (firstHeld, heldMessage) = order.Held.First();
                var users = order.Held.Values.SelectMany(m => ContinuousRecipients(m, order.LastFrameAt)).Distinct(StringComparer.Ordinal).ToArray();
                var afterSeq = order.Next - 1;
                var uptoSeq = firstHeld - 1;
                if (users.Length == 0 || uptoSeq - afterSeq > MaxGap)
                {
                    // Nobody here to fill for (they left), or more than a gap: go on from the held frames.
                    _metrics.FanoutGap(filled: false);
                    Log.GapSkipped(_logger, conversationId, afterSeq + 1, uptoSeq);
                    order.Next = firstHeld;
                    order.LastFrameAt = now;
                    DrainHeld(conversationId, order);
                    continue;
                }

                order.Filling = true;
                _ = FillAsync(conversationId, order, afterSeq, uptoSeq, users);
            }
        }

        if (_time.GetElapsedTime(_lastEviction, now) >= TimeSpan.FromSeconds(10))
        {
            _lastEviction = now;
            Evict(now);
        }
    }

    private async Task FillAsync(Guid conversationId, ConversationOrder order, long afterSeq, long uptoSeq, string[] users)
    {
        IReadOnlyList<FanoutPart> parts = [];
        try
        {
            parts = await _filler.ReadGapAsync(conversationId, afterSeq, uptoSeq, users, CancellationToken.None);
            _metrics.FanoutGap(filled: true);
            Log.GapFilled(_logger, conversationId, afterSeq + 1, uptoSeq, parts.Count);
        }
#pragma warning disable CA1031 // a failed read leaves the gap to the cursor check; the held frames must still go out
        catch (Exception ex)
#pragma warning restore CA1031
        {
            _metrics.FanoutGap(filled: false);
            Log.GapFillFailed(_logger, conversationId, afterSeq + 1, uptoSeq, ex);
        }

        lock (order)
        {
            foreach (var part in parts)
            {
                _hub.Deliver(part.UserIds, part.Frame);
            }

            order.Filling = false;
            order.Next = Math.Max(order.Next, uptoSeq + 1);
            order.LastFrameAt = _time.GetTimestamp();
            DrainHeld(conversationId, order);
        }
    }

    /// <summary>
    /// The state of a conversation, taken up again from its dormant expectation if it has one; a new one if not and
    /// <paramref name="create"/> (null otherwise).
    /// </summary>
    private ConversationOrder? Resume(Guid conversationId, bool create)
    {
        lock (_dormantLock)
        {
            // Under the dormant lock: an eviction moves a conversation from one dictionary to the other under it, so a
            // dormant expectation is taken up by exactly one caller, and never replaced by a new state.
            if (_conversations.TryGetValue(conversationId, out var order))
            {
                return order;
            }

            if (_dormant.Remove(conversationId, out var dormant))
            {
                order = new ConversationOrder { Next = dormant.Next, LastFrameAt = dormant.LastFrameAt, PrimedNext = dormant.PrimedNext, PrimedAt = dormant.PrimedAt };
            }
            else if (create)
            {
                order = new ConversationOrder();
            }
            else
            {
                return null;
            }

            _conversations[conversationId] = order;
            return order;
        }
    }

    private ConversationOrder GetOrResume(Guid conversationId) =>
        _conversations.TryGetValue(conversationId, out var order) ? order : Resume(conversationId, create: true)!;

    private void Evict(long now)
    {
        foreach (var (conversationId, order) in _conversations)
        {
            lock (order)
            {
                if (order.HeldSince == 0 && !order.Filling && _time.GetElapsedTime(order.LastFrameAt, now) >= Idle)
                {
                    order.Forgotten = true;
                    lock (_dormantLock)
                    {
                        _conversations.TryRemove(new KeyValuePair<Guid, ConversationOrder>(conversationId, order));
                        if (order.Next != 0)
                        {
                            // A recipient here may have been connected all along: what the next frame follows is still known.
                            _dormant[conversationId] = new Dormant(order.Next, order.LastFrameAt, order.PrimedNext, order.PrimedAt);
                        }
                    }
                }
            }
        }

        lock (_dormantLock)
        {
            if (_dormant.Count > _maxDormant)
            {
                // The oldest go (a tenth more than the excess, so that this sort is rare): their next frame starts afresh.
                var excess = _dormant.Count - _maxDormant + _maxDormant / 10;
                foreach (var conversationId in _dormant.OrderBy(d => d.Value.LastFrameAt).Take(excess).Select(d => d.Key).ToArray())
                {
                    _dormant.Remove(conversationId);
                }
            }
        }
    }

    /// <summary>What is kept of a conversation quiet for <see cref="Idle"/>: its expectations (<see cref="ConversationOrder"/>).</summary>
    private readonly record struct Dormant(long Next, long LastFrameAt, long PrimedNext, long PrimedAt);

    /// <summary>One conversation's expectation; guarded by its own lock.</summary>
    private sealed class ConversationOrder
    {
        /// <summary>The seq expected next; 0 before the first frame.</summary>
        public long Next;

        /// <summary>When the last frame went out (or the expectation was last moved).</summary>
        public long LastFrameAt;

        /// <summary>The last seq + 1 read for a socket that subscribed while an expectation existed, and when; 0 if none.</summary>
        public long PrimedNext;

        public long PrimedAt;

        /// <summary>When the current wait for a missing seq began; 0 while nothing is held.</summary>
        public long HeldSince;

        public bool Filling;

        public bool Forgotten;

        /// <summary>A catch-up asked for while a gap was open (<see cref="CatchUp"/>): up to this seq, for these users.</summary>
        public long CatchUpTo;

        public string[]? CatchUpUsers;

        public SortedDictionary<long, FanoutMessage> Held { get; } = [];
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7101, Level = LogLevel.Information,
            Message = "Conversation {ConversationId}: events {FromSeq}..{UptoSeq} did not arrive from their publisher; read {Frames} frames from the store")]
        public static partial void GapFilled(ILogger logger, Guid conversationId, long fromSeq, long uptoSeq, int frames);

        [LoggerMessage(EventId = 7102, Level = LogLevel.Information,
            Message = "Conversation {ConversationId}: events {FromSeq}..{UptoSeq} did not arrive and are not read back here; devices recover them through their cursors")]
        public static partial void GapSkipped(ILogger logger, Guid conversationId, long fromSeq, long uptoSeq);

        [LoggerMessage(EventId = 7103, Level = LogLevel.Warning,
            Message = "Conversation {ConversationId}: events {FromSeq}..{UptoSeq} could not be read back from the store; devices recover them through their cursors")]
        public static partial void GapFillFailed(ILogger logger, Guid conversationId, long fromSeq, long uptoSeq, Exception exception);
    }
}

using Microsoft.Extensions.Options;

namespace Parley.Server.Realtime;

/// <summary>What the heartbeat ends when a ping goes unanswered.</summary>
internal interface IHeartbeatOwner
{
    /// <summary>
    /// The connection is waiting for the peer's next frame. While it is not (it handles a frame, or has not started
    /// reading yet), an answer may be waiting unread: silence then proves nothing about the peer.
    /// </summary>
    bool AwaitsPeer { get; }

    /// <summary>The peer answered nothing within the heartbeat timeout after a ping: abort the socket.</summary>
    void HeartbeatTimedOut();
}

/// <summary>
/// The heartbeat of every socket on this instance, on one timer: a timing wheel whose slots hold the sockets due
/// in that tick (100 ms at most). A socket is looked at once per <see cref="RealtimeOptions.HeartbeatInterval"/>
/// when it is active (to reschedule it after what it last sent) and pinged when it was silent that long; a ping unanswered
/// for <see cref="RealtimeOptions.HeartbeatTimeout"/> aborts it. This replaces .NET's per-socket keep-alive timer,
/// which fires every quarter of the shorter of the two for every socket, idle or not.
/// </summary>
internal sealed partial class Heartbeats : IDisposable
{
    // Short ticks spread the pings: the sockets that connected within one tick are pinged together, and a burst of
    // thousands of pings and pongs at once raises the peak of pooled buffers (and so the memory kept) for nothing.
    private static readonly TimeSpan LongestTick = TimeSpan.FromMilliseconds(100);

    private readonly TimeProvider _time;
    private readonly long _interval;
    private readonly long _timeout;
    private readonly long _tick;
    private readonly long _recheck;
    private readonly HeartbeatStream?[] _slots;
    private readonly Lock _gate = new();
    private readonly ILogger _logger;
    private readonly ITimer _timer;

    // The next tick to look at (ticks are timestamps divided by _tick); guarded by _gate.
    private long _nextTick;

    public Heartbeats(IOptions<RealtimeOptions> options, TimeProvider time, ILogger<Heartbeats> logger)
    {
        var o = options.Value;
        _time = time;
        _logger = logger;
        var tick = TimeSpan.FromTicks(Math.Min(o.HeartbeatInterval.Ticks, o.HeartbeatTimeout.Ticks) / 4);
        tick = tick > LongestTick ? LongestTick : tick;
        _interval = ToTimestamp(o.HeartbeatInterval);
        _timeout = ToTimestamp(o.HeartbeatTimeout);
        _tick = Math.Max(1, ToTimestamp(tick));
        _recheck = Math.Max(_tick, _timeout / 4);
        // Every due time lies within the longer of the two from now: one slot more than that never wraps onto itself.
        _slots = new HeartbeatStream?[(Math.Max(_interval, _timeout) / _tick) + 3];
        _nextTick = (time.GetTimestamp() / _tick) + 1;
        // Created by whichever request needs it first: its logging scope and trace must not flow into every tick.
        using (ExecutionContext.SuppressFlow())
        {
            _timer = time.CreateTimer(static state => ((Heartbeats)state!).Tick(), this, tick, tick);
        }
    }

    /// <summary>Sockets the heartbeat looks after (a moment's value).</summary>
    public int Count { get; private set; }

    /// <summary>Starts the heartbeat of a socket: its first ping goes out once it has been silent for the interval.</summary>
    public void Register(HeartbeatStream stream, IHeartbeatOwner owner)
    {
        lock (_gate)
        {
            if (stream.Owner is not null)
            {
                throw new InvalidOperationException("The stream already has a heartbeat.");
            }

            stream.Owner = owner;
            stream.PingSentAt = 0;
            Schedule(stream, stream.LastReadStartedAt + _interval);
            Count++;
        }
    }

    /// <summary>Ends the heartbeat of a socket (its connection ended); nothing happens if it has none.</summary>
    public void Unregister(HeartbeatStream stream)
    {
        lock (_gate)
        {
            if (stream.Owner is null)
            {
                return;
            }

            Unlink(stream);
            stream.Owner = null;
            Count--;
        }
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>One tick of the timer: every slot due since the last one (a late timer catches up, at most one turn).</summary>
    internal void Tick()
    {
        List<HeartbeatStream>? pings = null;
        List<IHeartbeatOwner>? timedOut = null;
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            var nowTick = now / _tick;
            if (nowTick - _nextTick >= _slots.Length)
            {
                _nextTick = nowTick - _slots.Length + 1;
            }

            for (; _nextTick <= nowTick; _nextTick++)
            {
                var slot = (int)(_nextTick % _slots.Length);
                var stream = _slots[slot];
                _slots[slot] = null;
                while (stream is not null)
                {
                    var next = stream.Next;
                    stream.Previous = stream.Next = null;
                    stream.Slot = -1;
                    Decide(stream, now, ref pings, ref timedOut);
                    stream = next;
                }
            }
        }

        // Outside the lock: a ping may wait for the frame being written, and an abort runs the owner's code.
        foreach (var stream in pings ?? [])
        {
            _ = stream.TryPingAsync();
        }

        foreach (var owner in timedOut ?? [])
        {
            try
            {
                owner.HeartbeatTimedOut();
            }
            catch (Exception ex)
            {
                // On the timer's thread an exception would end the process; the other sockets still get theirs.
                Log.AbortFailed(_logger, ex);
            }
        }
    }

    /// <summary>What a socket whose slot came up needs; it is rescheduled unless it timed out.</summary>
    private void Decide(HeartbeatStream stream, long now, ref List<HeartbeatStream>? pings, ref List<IHeartbeatOwner>? timedOut)
    {
        var heard = stream.LastReadStartedAt;
        if (stream.PingSentAt != 0)
        {
            if (heard > stream.PingSentAt)
            {
                // Answered (or something else arrived): the next ping after another interval of silence.
                stream.PingSentAt = 0;
                Schedule(stream, heard + _interval);
            }
            else if (now - stream.PingSentAt < _timeout)
            {
                Schedule(stream, stream.PingSentAt + _timeout);
            }
            else if (!stream.Owner!.AwaitsPeer)
            {
                // The connection is busy with a frame (a slow store, say): look again once it reads.
                Schedule(stream, now + _recheck);
            }
            else
            {
                (timedOut ??= []).Add(stream.Owner);
                stream.Owner = null;
                Count--;
            }

            return;
        }

        if (now - heard >= _interval)
        {
            stream.PingSentAt = now;
            (pings ??= []).Add(stream);
            Schedule(stream, now + _timeout);
        }
        else
        {
            Schedule(stream, heard + _interval);
        }
    }

    /// <summary>Puts a socket in the slot of its due time, never in one already looked at.</summary>
    private void Schedule(HeartbeatStream stream, long due)
    {
        var tick = Math.Max((due + _tick - 1) / _tick, _nextTick + 1);
        var slot = (int)(tick % _slots.Length);
        var head = _slots[slot];
        stream.Slot = slot;
        stream.Previous = null;
        stream.Next = head;
        if (head is not null)
        {
            head.Previous = stream;
        }

        _slots[slot] = stream;
    }

    private void Unlink(HeartbeatStream stream)
    {
        if (stream.Slot < 0)
        {
            return;
        }

        if (stream.Previous is null)
        {
            _slots[stream.Slot] = stream.Next;
        }
        else
        {
            stream.Previous.Next = stream.Next;
        }

        if (stream.Next is not null)
        {
            stream.Next.Previous = stream.Previous;
        }

        stream.Previous = stream.Next = null;
        stream.Slot = -1;
    }

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2006, Level = LogLevel.Error, Message = "Aborting a socket that answered no ping failed")]
        public static partial void AbortFailed(ILogger logger, Exception exception);
    }
}

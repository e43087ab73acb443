using System.Diagnostics;
using Parley.Bench.Client;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// The books of a messaging run: for every scheduled message, whether it was offered, answered (acknowledged,
/// refused with <c>rate_limited</c>, or failed) and how many of its expected deliveries are still missing; counters for the progress line and the
/// result; and the latency histograms. Every receive loop reports into it concurrently, so all state is arrays
/// indexed by message number and interlocked counters, allocation-free per message.
/// Deliveries are matched per recipient device, not only counted: each message keeps the devices that got it, so a
/// second copy at one member (under a new seq) is a duplicate and cannot make up for a copy lost at another.
/// </summary>
internal sealed class MessageLedger : IFrameSink
{
    private const int NotOfferedState = 0;
    private const int OfferedState = 1;
    private const int AcknowledgedState = 2;
    private const int RefusedState = 3;
    private const int FailedState = 4;

    private readonly Schedule _schedule;
    private readonly int[] _state;
    private readonly int[] _remaining;
    private readonly int _maxRecipients;

    // Per message, the devices (Device.Index + 1) that received it: _receivedBy[index * _maxRecipients + k] for k <
    // _receivedCount[index]. A device appends only its own entry, from its receive loop (one at a time), so it always
    // sees its own earlier entries; another device's entry being written concurrently is never its own.
    private readonly int[] _receivedBy;
    private readonly int[] _receivedCount;
    private readonly bool[] _recordLatency;
    private readonly ErrorCounts _errors;
    private readonly ConnectionTally _connections;
    private long _start;
    private long _windowStart;
    private long _windowEnd;

    // Every message (warm-up included).
    private long _offered;
    private long _sent;
    private long _acknowledged;
    private long _answeredOtherwise; // refused or failed
    private long _delivered;
    private long _duplicated;
    private long _outOfOrder;
    private long _redelivered;
    private long _unexpected;
    private long _outstanding;

    // The measured window.
    private long _offeredMeasured;
    private long _acknowledgedMeasured;
    private long _deliveredMeasured;
    private long _expectedMeasured;
    private long _sentMeasured;
    private long _sentInWindow;
    private long _deliveredInWindow;

    /// <param name="schedule">The messages.</param>
    /// <param name="recipientsPerMessage">The most recipient devices any message has.</param>
    /// <param name="errors">Where error codes are counted.</param>
    /// <param name="connections">Where dropped connections are counted.</param>
    public MessageLedger(Schedule schedule, int recipientsPerMessage, ErrorCounts errors, ConnectionTally connections)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentOutOfRangeException.ThrowIfLessThan(recipientsPerMessage, 1);
        _schedule = schedule;
        _maxRecipients = recipientsPerMessage;
        _errors = errors;
        _connections = connections;
        var count = checked((int)schedule.Count);
        _state = new int[count];
        _remaining = new int[count];
        _receivedBy = new int[checked(count * recipientsPerMessage)];
        _receivedCount = new int[count];
        _recordLatency = [.. schedule.Segments.Select(s => s.Measured && s.RecordLatency)];
    }

    public Schedule Schedule => _schedule;

    /// <summary>Delivery latency (intended send time → arrival on a recipient's socket) of measured messages.</summary>
    public LatencyHistogram Latency { get; } = new();

    /// <summary>Acknowledgement latency (intended send time → message_ack or the REST response) of measured messages.</summary>
    public LatencyHistogram AckLatency { get; } = new();

    /// <summary>Called for every <c>sync_complete</c> (reconnect).</summary>
    public Action<Device, long>? SyncCompleted { get; set; }

    public long Start => _start;

    /// <summary>Sets the run's start and its measured window (<see cref="Stopwatch"/> timestamps).</summary>
    public void SetTimes(long start, long windowStart, long windowEnd)
    {
        _start = start;
        _windowStart = windowStart;
        _windowEnd = windowEnd;
    }

    /// <summary>Message <paramref name="index"/> is about to be sent and should reach <paramref name="recipients"/> sockets.</summary>
    public void Offer(long index, int recipients)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(recipients, _maxRecipients);
        _remaining[index] = recipients;
        Volatile.Write(ref _state[index], OfferedState);
        Interlocked.Add(ref _outstanding, recipients);
        Interlocked.Increment(ref _offered);
        if (_schedule.IsMeasured(index))
        {
            Interlocked.Increment(ref _offeredMeasured);
            Interlocked.Add(ref _expectedMeasured, recipients);
        }
    }

    public void OnSent(long messageIndex, long timestamp)
    {
        Interlocked.Increment(ref _sent);
        if (IsOurs(messageIndex) && _schedule.IsMeasured(messageIndex))
        {
            Interlocked.Increment(ref _sentMeasured);
        }

        if (timestamp >= _windowStart && timestamp <= _windowEnd)
        {
            Interlocked.Increment(ref _sentInWindow);
        }
    }

    public void OnAck(long messageIndex, long timestamp)
    {
        if (!IsOurs(messageIndex))
        {
            Interlocked.Increment(ref _unexpected);
            return;
        }

        if (Interlocked.CompareExchange(ref _state[messageIndex], AcknowledgedState, OfferedState) != OfferedState)
        {
            return; // a second answer to the same send: only the first counts
        }

        Interlocked.Increment(ref _acknowledged);
        if (_schedule.IsMeasured(messageIndex))
        {
            Interlocked.Increment(ref _acknowledgedMeasured);
            AckLatency.RecordTicks(timestamp - _schedule.IntendedTimestamp(_start, messageIndex));
        }
    }

    public void OnMessage(Device device, long messageIndex, Arrival arrival, bool fromSelf, long timestamp)
    {
        switch (arrival)
        {
            case Arrival.Duplicate:
                Interlocked.Increment(ref _duplicated);
                return;
            case Arrival.Redelivered:
                Interlocked.Increment(ref _redelivered);
                return;
            case Arrival.RedeliveredOutOfOrder:
                Interlocked.Increment(ref _redelivered);
                Interlocked.Increment(ref _outOfOrder);
                return;
            case Arrival.NewOutOfOrder:
                Interlocked.Increment(ref _outOfOrder);
                break;
            default:
                break;
        }

        if (fromSelf)
        {
            return; // the sender's own device gets its message too; only the other members' copies are deliveries
        }

        if (!IsOurs(messageIndex))
        {
            Interlocked.Increment(ref _unexpected);
            return;
        }

        if (!FirstAtDevice(device, messageIndex))
        {
            // The same message again on this device under another seq (the server stored or sent it twice).
            Interlocked.Increment(ref _duplicated);
            return;
        }

        if (Interlocked.Decrement(ref _remaining[messageIndex]) < 0)
        {
            Interlocked.Increment(ref _unexpected); // more devices than recipients, or a refused or failed send's copy
            return;
        }

        Interlocked.Increment(ref _delivered);
        Interlocked.Decrement(ref _outstanding);
        if (timestamp >= _windowStart && timestamp <= _windowEnd)
        {
            Interlocked.Increment(ref _deliveredInWindow);
        }

        var segment = _schedule.SegmentOf(messageIndex);
        if (_schedule.Segments[segment].Measured)
        {
            Interlocked.Increment(ref _deliveredMeasured);
        }

        if (_recordLatency[segment])
        {
            Latency.RecordTicks(timestamp - _schedule.IntendedTimestamp(_start, messageIndex));
        }
    }

    /// <summary>
    /// An error, by code. One that names a send answers it: <c>rate_limited</c> refuses it (the server declined on
    /// purpose), any other code fails it (the server or the transport broke). Errors the tool raises about what it
    /// received (<see cref="BenchErrors.IsObservation"/>) never change a message's state: a copy delivered into the
    /// wrong conversation says nothing about whether the message reached its real recipients.
    /// </summary>
    public void OnError(string code, long messageIndex)
    {
        _errors.Add(code);
        if (BenchErrors.IsObservation(code) || !IsOurs(messageIndex))
        {
            return;
        }

        var answer = code == BenchErrors.RateLimited ? RefusedState : FailedState;
        if (Interlocked.CompareExchange(ref _state[messageIndex], answer, OfferedState) == OfferedState)
        {
            // A refused or failed send is not expected to deliver: its deliveries are no longer outstanding (the run
            // fails on it anyway; a copy that still arrives counts as unexpected).
            Interlocked.Increment(ref _answeredOtherwise);
            Interlocked.Add(ref _outstanding, -Math.Max(0, Interlocked.Exchange(ref _remaining[messageIndex], 0)));
        }
    }

    public void OnSyncComplete(Device device, long timestamp) => SyncCompleted?.Invoke(device, timestamp);

    public void OnClosed(Device device, string code)
    {
        _connections.Drop();
        _errors.Add(code);
    }

    /// <summary>Nothing is outstanding: every offered message was answered and every expected delivery arrived.</summary>
    public bool Settled =>
        Volatile.Read(ref _outstanding) <= 0
        && Volatile.Read(ref _acknowledged) + Volatile.Read(ref _answeredOtherwise) >= Volatile.Read(ref _offered);

    public long Offered => Volatile.Read(ref _offered);

    public long Sent => Volatile.Read(ref _sent);

    public long AcknowledgedCount => Volatile.Read(ref _acknowledged);

    public long Delivered => Volatile.Read(ref _delivered);

    /// <summary>Offered and not answered yet (neither acknowledged, refused nor failed).</summary>
    public long InFlight => Offered - AcknowledgedCount - Volatile.Read(ref _answeredOtherwise);

    /// <summary>The final count, after the grace period.</summary>
    public LedgerTotals Totals()
    {
        long lost = 0, lostMeasured = 0, unanswered = 0, refused = 0, failed = 0;
        for (var i = 0; i < _state.Length; i++)
        {
            var state = Volatile.Read(ref _state[i]);
            if (state == AcknowledgedState)
            {
                var missing = Math.Max(0, Volatile.Read(ref _remaining[i]));
                lost += missing;
                if (_schedule.IsMeasured(i))
                {
                    lostMeasured += missing;
                }
            }
            else if (state == OfferedState)
            {
                unanswered++;
            }
            else if (state == RefusedState)
            {
                refused++;
            }
            else if (state == FailedState)
            {
                failed++;
            }
        }

        return new LedgerTotals(
            Offered: Volatile.Read(ref _offeredMeasured),
            Sent: Volatile.Read(ref _sentMeasured),
            SentInWindow: Volatile.Read(ref _sentInWindow),
            Acknowledged: Volatile.Read(ref _acknowledgedMeasured),
            ExpectedDeliveries: Volatile.Read(ref _expectedMeasured),
            Delivered: Volatile.Read(ref _deliveredMeasured),
            DeliveredInWindow: Volatile.Read(ref _deliveredInWindow),
            Lost: lost,
            LostMeasured: lostMeasured,
            Unanswered: unanswered,
            Refused: refused,
            FailedSends: failed,
            Duplicated: Volatile.Read(ref _duplicated),
            OutOfOrder: Volatile.Read(ref _outOfOrder),
            Redelivered: Volatile.Read(ref _redelivered),
            Unexpected: Volatile.Read(ref _unexpected),
            AllOffered: Offered);
    }

    /// <summary>Records that <paramref name="device"/> received message <paramref name="index"/>; false if it already had.</summary>
    private bool FirstAtDevice(Device device, long index)
    {
        var offset = index * _maxRecipients;
        var id = device.Index + 1;
        var count = Math.Min(Volatile.Read(ref _receivedCount[index]), _maxRecipients);
        for (var k = 0; k < count; k++)
        {
            if (Volatile.Read(ref _receivedBy[offset + k]) == id)
            {
                return false;
            }
        }

        var slot = Interlocked.Increment(ref _receivedCount[index]) - 1;
        if (slot < _maxRecipients)
        {
            Volatile.Write(ref _receivedBy[offset + slot], id);
        }

        return true;
    }

    private bool IsOurs(long index) => index >= 0 && index < _state.Length && Volatile.Read(ref _state[index]) != NotOfferedState;
}

/// <summary>
/// A ledger's final counts. Offered, Sent, Acknowledged, ExpectedDeliveries and Delivered describe the measured
/// window; Lost, Unanswered, Refused, FailedSends, Duplicated and OutOfOrder cover every message, warm-up included.
/// </summary>
internal sealed record LedgerTotals(
    long Offered,
    long Sent,
    long SentInWindow,
    long Acknowledged,
    long ExpectedDeliveries,
    long Delivered,
    long DeliveredInWindow,
    long Lost,
    long LostMeasured,
    long Unanswered,
    long Refused,
    long FailedSends,
    long Duplicated,
    long OutOfOrder,
    long Redelivered,
    long Unexpected,
    long AllOffered);

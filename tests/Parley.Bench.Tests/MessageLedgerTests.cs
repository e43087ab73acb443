using System.Diagnostics;
using Parley.Bench.Client;
using Parley.Bench.Reporting;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class MessageLedgerTests
{
    private static readonly Device Bob = NewDevice(1, "bob");
    private static readonly Device Alice = NewDevice(2, "alice");
    private static readonly Device Carol = NewDevice(3, "carol");

    private readonly ErrorCounts _errors = new();
    private readonly ConnectionTally _connections = new();

    private MessageLedger Ledger(long warmup = 0, long measured = 10)
    {
        var ledger = new MessageLedger(
            new Schedule(new ScheduleSegment(0, 100, warmup, Measured: false), new ScheduleSegment(warmup / 100.0, 100, measured, Measured: true)),
            recipientsPerMessage: 3, _errors, _connections);
        var now = Stopwatch.GetTimestamp();
        ledger.SetTimes(now, now, now + Stopwatch.Frequency * 100);
        return ledger;
    }

    private static Device NewDevice(int index, string user) =>
        new(index, new Identity(user, "bench", new Uri("http://127.0.0.1/"), null), [(Guid.NewGuid(), 0)]);

    [Fact]
    public void Totals_AcknowledgedButNeverDelivered_IsLost()
    {
        var ledger = Ledger();
        ledger.Offer(0, recipients: 1);
        ledger.OnAck(0, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();

        Assert.Equal(1, totals.Lost);
        Assert.Equal(0, totals.Unanswered);
        Assert.False(ledger.Settled);
    }

    [Fact]
    public void Totals_DeliveredToEveryRecipient_IsNotLost_AndSettles()
    {
        var ledger = Ledger();
        ledger.Offer(0, recipients: 2);
        ledger.OnMessage(Bob, 0, Arrival.New, fromSelf: false, Stopwatch.GetTimestamp());
        ledger.OnAck(0, Stopwatch.GetTimestamp());
        Assert.False(ledger.Settled);
        ledger.OnMessage(Alice, 0, Arrival.New, fromSelf: false, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();

        Assert.Equal(0, totals.Lost);
        Assert.Equal(2, totals.Delivered);
        Assert.True(ledger.Settled);
        Assert.Equal(2, ledger.Latency.Count);
        Assert.Equal(1, ledger.AckLatency.Count);
    }

    [Fact]
    public void Totals_OneOfThreeRecipientsMissing_CountsOneLostDelivery()
    {
        var ledger = Ledger();
        ledger.Offer(0, recipients: 3);
        ledger.OnAck(0, Stopwatch.GetTimestamp());
        ledger.OnMessage(Bob, 0, Arrival.New, false, Stopwatch.GetTimestamp());
        ledger.OnMessage(Alice, 0, Arrival.New, false, Stopwatch.GetTimestamp());

        Assert.Equal(1, ledger.Totals().Lost);
    }

    [Fact]
    public void Totals_SentButNeverAnswered_IsUnansweredNotLost()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);

        var totals = ledger.Totals();

        Assert.Equal(1, totals.Unanswered);
        Assert.Equal(0, totals.Lost);
    }

    [Fact]
    public void OnError_RateLimited_RefusesTheSend_ReportedAsRefused_NothingIsOutstanding()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);

        ledger.OnError("rate_limited", 0);

        var totals = ledger.Totals();
        Assert.Equal(1, totals.Refused);
        Assert.Equal(0, totals.FailedSends);
        Assert.Equal(0, totals.Lost);
        Assert.Equal(0, totals.Unanswered);
        Assert.True(ledger.Settled);
        Assert.Equal(1, _errors.Snapshot()["rate_limited"]);
    }

    [Theory]
    [InlineData("internal_error")]
    [InlineData("service_unavailable")]
    [InlineData("http_503")]
    [InlineData("http_failed")]
    [InlineData("http_timeout")]
    [InlineData("socket_closed")]
    public void OnError_AnyOtherCode_FailsTheSend_NotARefusal(string code)
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);
        ledger.Offer(1, 1);
        ledger.OnAck(1, Stopwatch.GetTimestamp());
        ledger.OnMessage(Bob, 1, Arrival.New, false, Stopwatch.GetTimestamp());

        ledger.OnError(code, 0);

        var totals = ledger.Totals();
        Assert.Equal(1, totals.FailedSends);
        Assert.Equal(0, totals.Refused);
        Assert.Equal(2, totals.ExpectedDeliveries);
        Assert.Equal(1, totals.Delivered);
        Assert.Equal(1, ledger.Latency.Count);
        Assert.True(ledger.Settled);
        Assert.Equal(1, _errors.Snapshot()[code]);
    }

    [Fact]
    public void OnError_ForeignConversationNamingASend_LeavesItsStateAlone_SoItsRealLossIsCounted()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);

        ledger.OnError("foreign_conversation", 0); // a copy leaked into another conversation, before the ack
        Assert.Equal(1, ledger.Totals().Unanswered);
        ledger.OnAck(0, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();
        Assert.Equal(1, totals.Acknowledged);
        Assert.Equal(1, totals.Lost);
        Assert.Equal(0, totals.Refused + totals.FailedSends);
        Assert.False(ledger.Settled);
        Assert.Equal(1, _errors.Snapshot()["foreign_conversation"]);
    }

    [Fact]
    public void OnMessage_Duplicate_IsCountedAndNotADelivery()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);
        ledger.OnMessage(Bob, 0, Arrival.New, false, Stopwatch.GetTimestamp());

        ledger.OnMessage(Bob, 0, Arrival.Duplicate, false, Stopwatch.GetTimestamp());
        ledger.OnMessage(Bob, 0, Arrival.Redelivered, false, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();
        Assert.Equal(1, totals.Delivered);
        Assert.Equal(1, totals.Duplicated);
        Assert.Equal(1, totals.Redelivered);
    }

    [Fact]
    public void OnMessage_RedeliveredOutOfOrder_CountsBoth_AndIsNotADelivery()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);
        ledger.OnMessage(Bob, 0, Arrival.New, false, Stopwatch.GetTimestamp());

        ledger.OnMessage(Bob, 0, Arrival.RedeliveredOutOfOrder, false, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();
        Assert.Equal(1, totals.Redelivered);
        Assert.Equal(1, totals.OutOfOrder);
        Assert.Equal(1, totals.Delivered);
    }

    [Fact]
    public void OnMessage_OutOfOrder_IsCountedAndStillADelivery()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);

        ledger.OnMessage(Bob, 0, Arrival.NewOutOfOrder, false, Stopwatch.GetTimestamp());

        Assert.Equal(1, ledger.Totals().OutOfOrder);
        Assert.Equal(1, ledger.Totals().Delivered);
    }

    [Fact]
    public void OnMessage_TheSendersOwnCopy_IsNotADelivery()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);
        ledger.OnAck(0, Stopwatch.GetTimestamp());

        ledger.OnMessage(Bob, 0, Arrival.New, fromSelf: true, Stopwatch.GetTimestamp());

        Assert.Equal(0, ledger.Totals().Delivered);
        Assert.Equal(1, ledger.Totals().Lost);
    }

    [Fact]
    public void OnMessage_MoreDevicesThanRecipients_OrAMessageNotSent_IsUnexpected()
    {
        var ledger = Ledger();
        ledger.Offer(0, 1);
        ledger.OnMessage(Bob, 0, Arrival.New, false, Stopwatch.GetTimestamp());

        ledger.OnMessage(Alice, 0, Arrival.New, false, Stopwatch.GetTimestamp());
        ledger.OnMessage(Bob, 99, Arrival.New, false, Stopwatch.GetTimestamp());

        Assert.Equal(1, ledger.Totals().Delivered);
        Assert.Equal(2, ledger.Totals().Unexpected);
        Assert.Equal(0, ledger.Totals().Duplicated);
    }

    [Fact]
    public void OnMessage_TheSameMessageTwiceAtOneDeviceUnderNewSeqs_IsADuplicate_AndDoesNotHideALossAtAnother()
    {
        // A group of three: the sender, Alice and Bob. Alice's socket gets message 0 under two seqs (the server
        // stored it twice): both are new positions to her seq tracker. Bob never gets it.
        var ledger = Ledger();
        ledger.Offer(0, recipients: 2);
        ledger.OnAck(0, Stopwatch.GetTimestamp());

        ledger.OnMessage(Alice, 0, Arrival.New, false, Stopwatch.GetTimestamp());
        ledger.OnMessage(Alice, 0, Arrival.New, false, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();
        Assert.Equal(1, totals.Delivered);
        Assert.Equal(1, totals.Duplicated);
        Assert.Equal(1, totals.Lost);
        Assert.Equal(0, totals.Unexpected);
        Assert.False(ledger.Settled);

        ledger.OnMessage(Carol, 0, Arrival.New, false, Stopwatch.GetTimestamp());
        Assert.Equal(0, ledger.Totals().Lost);
        Assert.True(ledger.Settled);
    }

    [Fact]
    public void OnMessage_ADelayedDelivery_RaisesTheRecordedLatencyByTheDelay()
    {
        var ledger = Ledger();
        var start = Stopwatch.GetTimestamp();
        ledger.SetTimes(start, start, start + Stopwatch.Frequency * 100);
        ledger.Offer(0, 1);
        ledger.Offer(1, 1);
        var onTime = ledger.Schedule.IntendedTimestamp(start, 0) + Stopwatch.Frequency / 1000; // 1 ms
        var late = ledger.Schedule.IntendedTimestamp(start, 1) + Stopwatch.Frequency * 3 / 10 + Stopwatch.Frequency / 1000; // 301 ms

        ledger.OnMessage(Bob, 0, Arrival.New, false, onTime);
        ledger.OnMessage(Bob, 1, Arrival.New, false, late);

        var latency = LatencyHistogram.Summarize(ledger.Latency.Snapshot());
        Assert.NotNull(latency);
        Assert.Equal(2, latency.Count);
        Assert.InRange(latency.Max - latency.P50, 299.0, 301.0); // the delay, to the histogram's 3 significant digits
        Assert.InRange(latency.Max, 300.0, 302.0);
    }

    [Fact]
    public void Totals_WarmupMessages_AreCheckedButNotCounted()
    {
        var ledger = Ledger(warmup: 5, measured: 5);
        for (var i = 0; i < 10; i++)
        {
            ledger.Offer(i, 1);
            ledger.OnAck(i, Stopwatch.GetTimestamp());
        }

        ledger.OnMessage(Bob, 7, Arrival.New, false, Stopwatch.GetTimestamp());

        var totals = ledger.Totals();
        Assert.Equal(5, totals.Offered);
        Assert.Equal(5, totals.Acknowledged);
        Assert.Equal(1, totals.Delivered);
        Assert.Equal(9, totals.Lost);
        Assert.Equal(4, totals.LostMeasured);
        Assert.Equal(1, ledger.Latency.Count);
    }

    [Fact]
    public void OnClosed_CountsADroppedConnection()
    {
        var ledger = Ledger();

        ledger.OnClosed(Bob, "close_4001");

        Assert.Equal(1, _connections.Dropped);
        Assert.Equal(1, _errors.Snapshot()["close_4001"]);
    }
}

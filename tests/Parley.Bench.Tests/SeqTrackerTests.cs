using Parley.Bench.Client;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class SeqTrackerTests
{
    [Fact]
    public void Observe_InOrder_IsNewAndMovesTheContiguousPosition()
    {
        var tracker = new SeqTracker(baseline: 1);

        Assert.Equal(Arrival.New, tracker.Observe(2));
        Assert.Equal(Arrival.New, tracker.Observe(3));
        Assert.Equal(3, tracker.Contiguous);
    }

    [Fact]
    public void Observe_SameSeqTwiceOnOneConnection_IsDuplicate()
    {
        var tracker = new SeqTracker(1);
        tracker.Observe(2);

        Assert.Equal(Arrival.Duplicate, tracker.Observe(2));
    }

    [Fact]
    public void Observe_LowerSeqAfterAHigherOne_IsNewButOutOfOrder_AndFillsTheGap()
    {
        var tracker = new SeqTracker(1);
        tracker.Observe(3);
        Assert.Equal(1, tracker.Contiguous);

        Assert.Equal(Arrival.NewOutOfOrder, tracker.Observe(2));
        Assert.Equal(3, tracker.Contiguous);
    }

    [Fact]
    public void Observe_AgainOnANewConnection_IsRedeliveredNotDuplicate()
    {
        var tracker = new SeqTracker(1);
        tracker.Observe(2);
        tracker.Observe(3);

        tracker.NewConnection();

        Assert.Equal(Arrival.Redelivered, tracker.Observe(3));
        Assert.Equal(Arrival.New, tracker.Observe(4));
        Assert.Equal(Arrival.Duplicate, tracker.Observe(3));
    }

    [Fact]
    public void Observe_ManySeqs_GrowsBeyondItsFirstWords()
    {
        var tracker = new SeqTracker(0);
        for (var seq = 1; seq <= 10_000; seq++)
        {
            Assert.Equal(Arrival.New, tracker.Observe(seq));
        }

        Assert.Equal(10_000, tracker.Contiguous);
        Assert.Equal(Arrival.Duplicate, tracker.Observe(9_999));
    }

    [Fact]
    public void Observe_AgainOnANewConnection_AtOrBelowTheLastCursorsPosition_IsDuplicate_AboveItRedelivered()
    {
        var device = new Device(0, new Identity("dev", "bench", new Uri("http://127.0.0.1/"), null), [(Guid.NewGuid(), 0)]);
        var tracker = device.Trackers[0];
        for (var seq = 1; seq <= 10; seq++)
        {
            tracker.Observe(seq);
        }

        Assert.Equal(10, device.TakeAck(0));
        device.CursorReceived(); // the server's cursor frame answering that ack covers seqs 1 to 10
        tracker.Observe(11);
        tracker.Observe(12);

        device.BeginConnection();

        Assert.Equal(Arrival.Duplicate, tracker.Observe(9));
        Assert.Equal(Arrival.Duplicate, tracker.Observe(10));
        Assert.Equal(Arrival.Redelivered, tracker.Observe(11));
        Assert.Equal(Arrival.Redelivered, tracker.Observe(12));
    }

    [Fact]
    public void Observe_RedeliveredAfterAHigherSeqOnTheSameSocket_IsAlsoOutOfOrder()
    {
        var tracker = new SeqTracker(0);
        tracker.Observe(1);
        tracker.Observe(2);
        tracker.Observe(3);
        tracker.NewConnection();

        Assert.Equal(Arrival.New, tracker.Observe(4));
        Assert.Equal(Arrival.RedeliveredOutOfOrder, tracker.Observe(2));
        Assert.Equal(Arrival.RedeliveredOutOfOrder, tracker.Observe(3));
    }
}

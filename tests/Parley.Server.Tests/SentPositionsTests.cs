using Parley.Server.Sync;

namespace Parley.Server.Tests;

/// <summary>What a socket holds, exactly: the basis of every cursor it is given.</summary>
[Trait("Store", "Independent")]
public sealed class SentPositionsTests
{
    private static readonly Guid C = Guid.CreateVersion7();
    private static readonly Guid D = Guid.CreateVersion7();

    [Fact]
    public void Exact_ALaterSeqDoesNotImplyTheEarlierOnes()
    {
        var sent = new SentPositions();
        sent.Record(C, 3);

        Assert.True(sent.Holds(C, 3));
        Assert.False(sent.Holds(C, 2));
        Assert.False(sent.Holds(C, 1));
        Assert.False(sent.Holds(D, 3));
    }

    [Fact]
    public void Confirm_RaisesTheFloorAndKeepsSeqsAboveIt()
    {
        var sent = new SentPositions();
        sent.Record(C, 5);
        sent.Record(C, 7);
        sent.Confirm(C, 4);

        Assert.True(sent.Holds(C, 1));
        Assert.True(sent.Holds(C, 4));
        Assert.True(sent.Holds(C, 5));
        Assert.False(sent.Holds(C, 6));
        Assert.True(sent.Holds(C, 7));

        // A lower confirmation changes nothing; a record under the floor is already held.
        sent.Confirm(C, 2);
        sent.Record(C, 3);
        Assert.True(sent.Holds(C, 4));
        Assert.False(sent.Holds(C, 6));
    }

    [Fact]
    public void Record_InOrder_KeepsOneRange_AndAGapStaysAGap()
    {
        var sent = new SentPositions();
        for (var seq = 40; seq <= 60; seq++)
        {
            if (seq != 50)
            {
                sent.Record(C, seq);
            }
        }

        // A socket without cursors is recorded as exactly: seq 50 never reached it, and nothing claims it did.
        Assert.False(sent.Holds(C, 50));
        Assert.False(sent.Holds(C, 39));
        Assert.True(sent.Holds(C, 40));
        Assert.True(sent.Holds(C, 49));
        Assert.True(sent.Holds(C, 51));
        Assert.True(sent.Holds(C, 60));
        Assert.False(sent.Holds(C, 61));
        Assert.Equal(2, sent.RangeCount(C));

        sent.Record(C, 50);
        Assert.True(sent.Holds(C, 50));
        Assert.Equal(1, sent.RangeCount(C));
    }

    [Fact]
    public void Record_OutOfOrder_MergesRangesOnEitherSide()
    {
        var sent = new SentPositions();
        foreach (var seq in new long[] { 10, 14, 12, 11, 16, 13, 12, 20 })
        {
            sent.Record(C, seq);
        }

        Assert.Equal(3, sent.RangeCount(C)); // 10..14, 16, 20
        Assert.True(sent.Holds(C, 13));
        Assert.False(sent.Holds(C, 15));
        Assert.True(sent.Holds(C, 16));
        Assert.False(sent.Holds(C, 17));

        sent.Record(C, 15);
        Assert.Equal(2, sent.RangeCount(C)); // 10..16, 20
        Assert.True(sent.Holds(C, 15));
    }

    [Fact]
    public void Confirm_InsideARange_KeepsItsUpperPart()
    {
        var sent = new SentPositions();
        foreach (var seq in new long[] { 3, 4, 5, 6, 9 })
        {
            sent.Record(C, seq);
        }

        sent.Confirm(C, 4);

        Assert.True(sent.Holds(C, 2));
        Assert.True(sent.Holds(C, 6));
        Assert.False(sent.Holds(C, 7));
        Assert.True(sent.Holds(C, 9));
        Assert.Equal(2, sent.RangeCount(C));
        Assert.True(sent.HasUnconfirmed);

        sent.Confirm(C, 9);
        Assert.Equal(0, sent.RangeCount(C));
        Assert.False(sent.HasUnconfirmed);
    }

    [Fact]
    public void HasUnconfirmed_UntilAConfirmationCoversWhatWasSent()
    {
        var sent = new SentPositions();
        Assert.False(sent.HasUnconfirmed);

        sent.Record(C, 2);
        sent.Record(D, 5);
        Assert.True(sent.HasUnconfirmed);

        sent.Confirm(C, 2);
        Assert.True(sent.HasUnconfirmed);
        sent.Confirm(D, 5);
        Assert.False(sent.HasUnconfirmed);
    }
}

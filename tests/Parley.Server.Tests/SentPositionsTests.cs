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
        sent.Record(C, 3, exact: true);

        Assert.True(sent.Holds(C, 3));
        Assert.False(sent.Holds(C, 2));
        Assert.False(sent.Holds(C, 1));
        Assert.False(sent.Holds(D, 3));
    }

    [Fact]
    public void Confirm_RaisesTheFloorAndKeepsSeqsAboveIt()
    {
        var sent = new SentPositions();
        sent.Record(C, 5, exact: true);
        sent.Record(C, 7, exact: true);
        sent.Confirm(C, 4);

        Assert.True(sent.Holds(C, 1));
        Assert.True(sent.Holds(C, 4));
        Assert.True(sent.Holds(C, 5));
        Assert.False(sent.Holds(C, 6));
        Assert.True(sent.Holds(C, 7));

        // A lower confirmation changes nothing; a record under the floor is already held.
        sent.Confirm(C, 2);
        sent.Record(C, 3, exact: true);
        Assert.True(sent.Holds(C, 4));
        Assert.False(sent.Holds(C, 6));
    }

    [Fact]
    public void NotExact_OnlyTheNewestIsKeptAsAFloor()
    {
        var sent = new SentPositions();
        sent.Record(C, 3, exact: false);
        sent.Record(C, 2, exact: false);

        Assert.True(sent.Holds(C, 1));
        Assert.True(sent.Holds(C, 3));
        Assert.False(sent.Holds(C, 4));
    }

    [Fact]
    public void HasUnconfirmed_UntilAConfirmationCoversWhatWasSent()
    {
        var sent = new SentPositions();
        Assert.False(sent.HasUnconfirmed);

        sent.Record(C, 2, exact: true);
        sent.Record(D, 5, exact: true);
        Assert.True(sent.HasUnconfirmed);

        sent.Confirm(C, 2);
        Assert.True(sent.HasUnconfirmed);
        sent.Confirm(D, 5);
        Assert.False(sent.HasUnconfirmed);

        // A socket without cursors never has anything to confirm.
        sent.Record(C, 9, exact: false);
        Assert.False(sent.HasUnconfirmed);
    }
}

using Microsoft.Extensions.Time.Testing;
using Parley.Client.Realtime;

namespace Parley.Client.Tests;

/// <summary>Which acks are due and how fast they go out: cumulative per conversation, paced per window, repeated after a new socket.</summary>
[Trait("Store", "Independent")]
public sealed class AckPacerTests
{
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");
    private static readonly Guid D = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc3");

    private readonly FakeTimeProvider _time = new();
    private readonly AckPacer _pacer;

    public AckPacerTests()
    {
        _pacer = new AckPacer(_time);
    }

    private static MessageCreatedEvent Msg(Guid conversation, long seq) => new()
    {
        ConversationId = conversation,
        Seq = seq,
        Message = new Message { ConversationId = conversation, Seq = seq, SenderId = "bob" },
    };

    /// <summary>Flushes, accepting every ack; returns what was sent and whether more remain due.</summary>
    private (List<(Guid Conversation, long Seq)> Sent, bool More) Flush()
    {
        var sent = new List<(Guid, long)>();
        var more = _pacer.Flush((conversation, seq) =>
        {
            sent.Add((conversation, seq));
            return true;
        });
        return (sent, more);
    }

    [Fact]
    public void Flush_SeveralEventsConsumed_OneAckPerConversationWithTheHighestSeq()
    {
        Assert.True(_pacer.Consumed(Msg(C, 1), "alice"));
        Assert.True(_pacer.Consumed(Msg(C, 2), "alice"));
        Assert.True(_pacer.Consumed(Msg(D, 7), "alice"));

        var (sent, more) = Flush();

        Assert.Equal([(C, 2L), (D, 7L)], sent.OrderBy(a => a.Conversation));
        Assert.False(more);
        Assert.Empty(Flush().Sent);
    }

    [Fact]
    public void Consumed_SeqNotAboveTheLastConsumed_NoAckDue()
    {
        _pacer.Consumed(Msg(C, 3), "alice");
        Flush();

        Assert.False(_pacer.Consumed(Msg(C, 3), "alice"));
        Assert.False(_pacer.Consumed(Msg(C, 2), "alice"));
        Assert.False(_pacer.HasDue);
    }

    [Fact]
    public void Restore_StoredPositions_EventsUpToThemAreNotAcknowledgedAgain()
    {
        _pacer.Restore(new Dictionary<Guid, long> { [C] = 5 });

        Assert.False(_pacer.Consumed(Msg(C, 5), "alice"));
        Assert.True(_pacer.Consumed(Msg(C, 6), "alice"));
        Assert.Equal([(C, 6L)], Flush().Sent);
    }

    [Fact]
    public void Consumed_OwnRemoval_NoAckAndTheOneDueIsWithdrawn()
    {
        _pacer.Consumed(Msg(C, 1), "alice");
        var removed = new ParticipantRemovedEvent { ConversationId = C, Seq = 2, UserId = "alice", RemovedBy = "bob" };

        // The server refuses an ack from a device that is no longer a member.
        Assert.False(_pacer.Consumed(removed, "alice"));
        Assert.False(_pacer.HasDue);
        Assert.Empty(Flush().Sent);
    }

    [Fact]
    public void Flush_MoreConversationsDueThanTheWindowAllows_TheRestGoOutInTheNextWindow()
    {
        var conversations = Enumerable.Range(0, AckPacer.MaxAcksPerWindow + 5).Select(_ => Guid.CreateVersion7()).ToList();
        foreach (var conversation in conversations)
        {
            _pacer.Consumed(Msg(conversation, 1), "alice");
        }

        var first = Flush();
        Assert.Equal(AckPacer.MaxAcksPerWindow, first.Sent.Count);
        Assert.True(first.More);

        // However often it flushes, the window allows no more.
        Assert.Empty(Flush().Sent);
        _time.Advance(AckPacer.Window - TimeSpan.FromMilliseconds(1));
        Assert.Empty(Flush().Sent);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        var second = Flush();
        Assert.Equal(5, second.Sent.Count);
        Assert.False(second.More);
        Assert.Equal(conversations.Order(), first.Sent.Concat(second.Sent).Select(a => a.Conversation).Order());
    }

    [Fact]
    public void Flush_SeveralFlushesInOneWindow_ShareItsBudget()
    {
        for (var i = 0; i < 50; i++)
        {
            _pacer.Consumed(Msg(Guid.CreateVersion7(), 1), "alice");
        }

        Assert.Equal(50, Flush().Sent.Count);
        for (var i = 0; i < 40; i++)
        {
            _pacer.Consumed(Msg(Guid.CreateVersion7(), 1), "alice");
        }

        var (sent, more) = Flush();
        Assert.Equal(AckPacer.MaxAcksPerWindow - 50, sent.Count);
        Assert.True(more);
        _time.Advance(AckPacer.Window);
        Assert.Equal(10, Flush().Sent.Count);
    }

    [Fact]
    public void Flush_SocketQueueRefusesTheAck_ItStaysDueAndCostsNothing()
    {
        _pacer.Consumed(Msg(C, 4), "alice");

        Assert.True(_pacer.Flush((_, _) => false));
        Assert.True(_pacer.HasDue);

        Assert.Equal([(C, 4L)], Flush().Sent);
        Assert.False(_pacer.HasDue);
    }

    [Fact]
    public void SocketOpened_AcksSentOnThePreviousSocket_DueAgainWithTheLatestSeq()
    {
        _pacer.Consumed(Msg(C, 1), "alice");
        Flush();
        Assert.False(_pacer.HasDue);

        _pacer.SocketOpened();

        Assert.True(_pacer.HasDue);
        Assert.Equal([(C, 1L)], Flush().Sent);
        _pacer.SocketOpened();
        Assert.Equal([(C, 1L)], Flush().Sent);
    }

    [Fact]
    public void Forget_AfterASyncReset_PositionsStartOverAndNothingIsRepeated()
    {
        _pacer.Consumed(Msg(C, 9), "alice");
        Flush();

        _pacer.Forget();
        _pacer.SocketOpened();

        Assert.False(_pacer.HasDue);
        Assert.True(_pacer.Consumed(Msg(C, 1), "alice"));
        Assert.Equal([(C, 1L)], Flush().Sent);
    }
}

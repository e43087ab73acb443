using System.Threading.Channels;
using Parley.Client.Realtime;

namespace Parley.Client.Tests;

/// <summary>The rules for clients of docs/delivery.md as a state machine: dedupe, gaps, membership, cursors, resets.</summary>
[Trait("Store", "Independent")]
public sealed class DeliveryStateTests
{
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");
    private static readonly Guid D = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc3");
    private static readonly Guid E = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc4");

    private readonly Channel<DeliveryItem> _output = Channel.CreateUnbounded<DeliveryItem>();
    private readonly DeliveryState _state;

    public DeliveryStateTests()
    {
        _state = new DeliveryState(_output.Writer) { UserId = "alice" };
    }

    private static MessageCreatedEvent Msg(Guid conversation, long seq) => new()
    {
        ConversationId = conversation,
        Seq = seq,
        Message = new Message { ConversationId = conversation, Seq = seq, SenderId = "bob" },
    };

    private List<DeliveryItem> Drain()
    {
        var items = new List<DeliveryItem>();
        while (_output.Reader.TryRead(out var item))
        {
            items.Add(item);
        }

        return items;
    }

    private List<long> AppliedSeqs() => Drain().Select(i => i.Event).OfType<ConversationEvent>().Select(e => e.Seq).ToList();

    [Fact]
    public void Offer_InOrder_AppliesEachOnce()
    {
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 1)));
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 2)));
        Assert.Equal([1L, 2L], AppliedSeqs());
    }

    [Fact]
    public void Offer_SeqAtOrBelowApplied_IsDuplicateAndNotEmitted()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(Msg(C, 2));
        Assert.Equal(OfferResult.Duplicate, _state.Offer(Msg(C, 2)));
        Assert.Equal(OfferResult.Duplicate, _state.Offer(Msg(C, 1)));
        Assert.Equal([1L, 2L], AppliedSeqs());
    }

    [Fact]
    public void Offer_AfterGap_BuffersThenAppliesInOrderWhenTheGapFills()
    {
        _state.Offer(Msg(C, 1));
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 4)));
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 3)));
        Assert.Equal(OfferResult.Duplicate, _state.Offer(Msg(C, 4)));
        Assert.True(_state.HasGaps);
        Assert.Equal([C], _state.ConversationsWithGaps);
        Assert.Equal([1L], AppliedSeqs());

        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 2)));

        Assert.Equal([2L, 3L, 4L], AppliedSeqs());
        Assert.False(_state.HasGaps);
    }

    [Fact]
    public void Offer_GapInOneConversation_OthersKeepFlowing()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(Msg(C, 3));
        _state.Offer(Msg(D, 1));
        _state.Offer(Msg(D, 2));
        Assert.Equal([1L, 1L, 2L], AppliedSeqs());
    }

    [Fact]
    public void Offer_UnknownConversationAtSeq1OrOwnJoining_StartsThere()
    {
        Assert.Equal(OfferResult.Applied, _state.Offer(new HiddenEvent { ConversationId = C, Seq = 1 }));
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(D, 1)));
        Assert.Equal(OfferResult.Applied, _state.Offer(new ParticipantAddedEvent { ConversationId = E, Seq = 9, UserId = "alice" }));
        Assert.False(_state.HasGaps);
        Assert.Equal(9, _state.Applied(E));
    }

    [Fact]
    public void Offer_UnknownConversationMidway_BufferedUntilACompleteReadFromTheCursorShowsWhereItStarts()
    {
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 17)));
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 19)));
        Assert.Equal(OfferResult.Duplicate, _state.Offer(Msg(C, 17)));
        Assert.True(_state.HasGaps);
        Assert.Empty(AppliedSeqs());

        // A read that has not reached the first live event yet (17 not positioned) decides nothing.
        _state.Offer(Msg(C, 16));
        _state.ResolveStarts(new Dictionary<Guid, long> { [C] = 16 });
        Assert.Empty(AppliedSeqs());

        _state.ResolveStarts(new Dictionary<Guid, long> { [C] = 17 });
        Assert.Equal([16L, 17L], AppliedSeqs());
        Assert.True(_state.HasGaps); // 18 is still missing
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 18)));
        Assert.Equal([18L, 19L], AppliedSeqs());
        Assert.False(_state.HasGaps);
    }

    [Fact]
    public void ResolveStarts_AfterACatchUp_EveryUnknownStartIsItsLowestEvent()
    {
        _state.Offer(Msg(C, 5));
        _state.Offer(Msg(D, 8));
        _state.Offer(Msg(D, 7));

        _state.ResolveStarts(null);

        Assert.Equal([5L, 7L, 8L], AppliedSeqs().Order());
        Assert.False(_state.HasGaps);
    }

    [Fact]
    public void Offer_HiddenEvent_FillsThePosition()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(Msg(C, 3));
        _state.Offer(new HiddenEvent { ConversationId = C, Seq = 2 });
        var items = Drain();
        Assert.Equal([1L, 2L, 3L], items.Select(i => ((ConversationEvent)i.Event!).Seq));
        Assert.IsType<HiddenEvent>(items[1].Event);
    }

    [Fact]
    public void Offer_AfterOwnRemovalThenOwnReAdd_PositionsRestartAtTheJoining()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(new ParticipantRemovedEvent { ConversationId = C, Seq = 2, UserId = "alice" });
        Assert.Equal(OfferResult.Applied, _state.Offer(new ParticipantAddedEvent { ConversationId = C, Seq = 9, UserId = "alice" }));
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 10)));
        Assert.False(_state.HasGaps);
        Assert.Equal([1L, 2L, 9L, 10L], AppliedSeqs());
    }

    [Fact]
    public void Offer_OwnJoiningAfterAMissedRemoval_RestartsInsteadOfWaitingForTheGap()
    {
        _state.Offer(Msg(C, 1));
        Assert.Equal(OfferResult.Applied, _state.Offer(new ParticipantAddedEvent { ConversationId = C, Seq = 6, UserId = "alice" }));
        Assert.False(_state.HasGaps);
    }

    [Fact]
    public void Offer_SomeoneElsesJoiningAfterAGap_IsBuffered()
    {
        _state.Offer(Msg(C, 1));
        Assert.Equal(OfferResult.Buffered, _state.Offer(new ParticipantAddedEvent { ConversationId = C, Seq = 6, UserId = "carol" }));
    }

    [Fact]
    public void Offer_RedeliveredRemovalAfterRemoval_IsDuplicate()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(new ParticipantRemovedEvent { ConversationId = C, Seq = 2, UserId = "alice" });
        Assert.Equal(OfferResult.Duplicate, _state.Offer(new ParticipantRemovedEvent { ConversationId = C, Seq = 2, UserId = "alice" }));
    }

    [Fact]
    public void OnCursor_WhileAGapHoldsEventsBack_IsNotReleasedUntilAfterTheFill()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(Msg(C, 3));
        Assert.False(_state.OnCursor("k1"));
        Assert.Equal("k1", _state.LatestCursor);
        Assert.DoesNotContain(Drain(), i => i.Cursor is not null);

        _state.Offer(Msg(C, 2));
        Assert.True(_state.OnCursor("k2"));
        var items = Drain();
        Assert.Equal("k2", items[^1].Cursor);
        Assert.Equal(3, ((ConversationEvent)items[^2].Event!).Seq);
    }

    [Fact]
    public void Reset_ForgetsPositionsAndBuffers_EmitsResetThenTheFreshCursor()
    {
        _state.Offer(Msg(C, 5));
        _state.Offer(Msg(C, 8));
        Drain();

        _state.Reset("fresh", "cursor_expired");

        var items = Drain();
        Assert.Equal("cursor_expired", Assert.IsType<SyncResetEvent>(items[0].Event).Reason);
        Assert.Equal("fresh", items[1].Cursor);
        Assert.False(_state.HasGaps);
        Assert.Null(_state.Applied(C));
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 30)));
    }

    [Fact]
    public void SkipGaps_BufferedEvents_AppliedInOrderAndCounted()
    {
        _state.Offer(Msg(C, 1));
        _state.Offer(Msg(C, 4));
        _state.Offer(Msg(C, 7));
        Drain();

        Assert.Equal(4, _state.SkipGaps());

        Assert.Equal([4L, 7L], AppliedSeqs());
        Assert.False(_state.HasGaps);
    }

    [Fact]
    public void Restore_Checkpoint_ReplayedEventsAreDuplicatesAndAGapIsDetected()
    {
        _state.Restore(new DeliveryCheckpoint("k", new Dictionary<Guid, long> { [C] = 5 }));
        Assert.Equal("k", _state.LatestCursor);
        Assert.Equal(OfferResult.Duplicate, _state.Offer(Msg(C, 5)));
        Assert.Equal(OfferResult.Buffered, _state.Offer(Msg(C, 7)));
        Assert.Equal(OfferResult.Applied, _state.Offer(Msg(C, 6)));
    }
}

using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Fanout;
using Parley.Server.Realtime;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The order gate: racing publications of one conversation reach sockets in seq order, and lost ones are read back.</summary>
[Trait("Store", "Independent")]
public sealed class OrderGateTests : IAsyncDisposable
{
    private static readonly TimeSpan Hold = TimeSpan.FromMilliseconds(200);
    private static readonly Guid Conversation = Guid.CreateVersion7();

    private readonly FakeTimeProvider _time = new();
    private readonly RecordingFiller _filler = new();
    private readonly ConnectionHub _hub;
    private readonly OrderGate _gate;
    private readonly List<FanoutNode.Device> _devices = [];

    public OrderGateTests()
    {
        _hub = new ConnectionHub(TestMetrics.Unobserved, _time);
        _gate = new OrderGate(_hub, _filler, _time, Hold, TestMetrics.Unobserved, NullLogger<OrderGate>.Instance);
    }

    [Fact]
    public async Task Offer_SeqsInOrder_GoOutAtOnce()
    {
        var alice = Connect("alice");

        Offer(1, "alice");
        Offer(2, "alice");
        Offer(3, "alice");

        await alice.WaitForAsync(3);
        Assert.Equal(["s1", "s2", "s3"], alice.Labels);
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task Offer_SuccessorBeforeItsPredecessor_IsHeldUntilThePredecessorArrives()
    {
        var alice = Connect("alice");
        Offer(1, "alice");
        _time.Advance(TimeSpan.FromMilliseconds(1));

        Offer(3, "alice");
        Assert.Equal(1, _gate.Waiting);
        Offer(2, "alice");

        await alice.WaitForAsync(3);
        Assert.Equal(["s1", "s2", "s3"], alice.Labels);
        Assert.Equal(0, _gate.Waiting);
        Assert.Empty(_filler.Requests);
    }

    [Fact]
    public async Task Offer_PredecessorNeverArrives_ReadFromTheStoreAfterTheHoldThenTheHeldOnesFollow()
    {
        var alice = Connect("alice");
        Offer(1, "alice");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Offer(4, "alice");
        Offer(5, "alice");

        _time.Advance(Hold / 2);
        Assert.Empty(_filler.Requests);
        _time.Advance(Hold);

        await alice.WaitForAsync(5);
        Assert.Equal(["s1", "s2", "s3", "s4", "s5"], alice.Labels);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal((Conversation, 1L, 3L), (request.ConversationId, request.AfterSeq, request.UptoSeq));
        Assert.Equal(["alice"], request.Users);

        // The lost publication turns up after all: the sockets already have it.
        Offer(2, "alice");
        Offer(6, "alice");
        await alice.WaitForAsync(7);
        Assert.Equal(["s1", "s2", "s3", "s4", "s5", "s2", "s6"], alice.Labels); // passed on; a socket's own skip drops it
    }

    [Fact]
    public async Task Offer_AheadButNoRecipientWasHereAllAlong_GoesOutAsTheNewStartAfterABriefWait()
    {
        var bob = Connect("bob");
        Offer(1, "bob");
        _time.Advance(TimeSpan.FromSeconds(1));

        // Alice connects now: seqs 2..9 were never routed here for anyone who was here. Her socket is not primed
        // (its read of the last seqs has not returned), so a racing predecessor gets a brief wait.
        var alice = Connect("alice");
        Offer(10, "alice");
        Offer(11, "alice");
        Assert.Empty(alice.Socket.Sent);
        _time.Advance(OrderGate.UnknownHold * 2);

        await alice.WaitForAsync(2);
        await bob.WaitForAsync(1); // delivered on its own, not ordered with alice's
        Assert.Equal(["s10", "s11"], alice.Labels);
        Assert.Equal(["s1"], bob.Labels);
        Assert.Empty(_filler.Requests);
    }

    [Fact]
    public async Task Offer_AheadWhileARecipientIsConnectingUnprimed_APredecessorRacingItGoesFirst()
    {
        // Alice's socket has just connected; seqs 9 and 10 were committed after it subscribed and race here.
        var alice = await OnlyRecipientLeftThenAliceConnectsAsync(TimeSpan.FromSeconds(1));
        Offer(10, "alice", "bob");
        Offer(9, "alice", "bob");
        _time.Advance(OrderGate.UnknownHold * 2);

        await alice.WaitForAsync(2);
        Assert.Equal(["s9", "s10"], alice.Labels);
        Assert.Empty(_filler.Requests);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Offer_AheadWhileUnprimed_ThenPrimedBelowIt_TheSeqsBetweenAreAGap(bool predecessorArrives)
    {
        var alice = await OnlyRecipientLeftThenAliceConnectsAsync(TimeSpan.FromSeconds(1));
        Offer(10, "alice", "bob");
        _gate.Prime(Conversation, 8); // her socket's read: 9 and 10 came after it, 9 is late beyond the brief wait
        _time.Advance(OrderGate.UnknownHold * 2);
        Assert.Equal(1, _gate.Waiting);

        if (predecessorArrives)
        {
            Offer(9, "alice", "bob");
        }
        else
        {
            _time.Advance(Hold * 2);
            var request = Assert.Single(_filler.Requests);
            Assert.Equal((8L, 9L), (request.AfterSeq, request.UptoSeq));
        }

        await alice.WaitForAsync(2);
        Assert.Equal(["s9", "s10"], alice.Labels);
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task CatchUp_WhileAGapIsOpen_RunsOnceTheHeldFramesHaveGoneOut()
    {
        var alice = Connect("alice");
        Offer(1, "alice");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Offer(3, "alice");

        _gate.CatchUp(Conversation, 5, ["alice"]);
        Assert.Empty(_filler.Requests);
        Offer(2, "alice");

        await alice.WaitForAsync(5);
        Assert.Equal(["s1", "s2", "s3", "s4", "s5"], alice.Labels);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal((3L, 5L), (request.AfterSeq, request.UptoSeq));
    }

    [Fact]
    public async Task Offer_HeldForARecipientWhoLeft_GoOutInOrderToTheOthersBeforeALaterFrame()
    {
        var alice = Connect("alice");
        Offer(1, "alice", "carol");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var carol = Connect("carol"); // connected after the last frame: not one the gap is held for
        Offer(3, "alice", "carol");
        Assert.Equal(1, _gate.Waiting);

        await alice.DisconnectAsync();
        Offer(4, "alice", "carol");
        _time.Advance(OrderGate.UnknownHold * 2);

        await carol.WaitForAsync(2);
        Assert.Equal(["s3", "s4"], carol.Labels);
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task Offer_TheMissingFrameArrivesWhileItIsReadBack_StillReachesRecipientsTheReadDidNotCover()
    {
        var alice = Connect("alice");
        Offer(1, "alice", "carol");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var carol = Connect("carol");
        Offer(3, "alice", "carol");
        var release = new TaskCompletionSource();
        _filler.Until = release.Task;
        _time.Advance(Hold * 2);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal(["alice"], request.Users); // connected all along; carol came after the last frame

        Offer(2, "alice", "carol"); // the lost publication turns up during the read
        release.SetResult();

        await carol.WaitForAsync(2);
        Assert.Equal(["s2", "s3"], carol.Labels);
        await alice.WaitForAsync(4);
        Assert.Equal(["s1", "s2", "s2", "s3"], alice.Labels); // read back, then the late copy (a socket's own skip drops it)
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task CatchUp_TheLastEventsNeverArrived_ReadBackForTheRecipientsConnectedAllAlong()
    {
        var alice = Connect("alice");
        Offer(1, "alice", "carol");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var carol = Connect("carol"); // after the last frame: her socket read its own baseline, her cursor check covers her

        // Redis was unreachable; seqs 2 and 3 were committed elsewhere meanwhile and are the conversation's last.
        _gate.CatchUp(Conversation, 3, ["alice", "carol"]);

        await alice.WaitForAsync(3);
        Assert.Equal(["s1", "s2", "s3"], alice.Labels);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal((1L, 3L), (request.AfterSeq, request.UptoSeq));
        Assert.Equal(["alice"], request.Users);

        // The expectation goes on from there; nothing more to read when nothing more is missing.
        Offer(4, "alice", "carol");
        await alice.WaitForAsync(4);
        Assert.Equal("s4", alice.Labels[^1]);
        _gate.CatchUp(Conversation, 4, ["alice"]);
        _gate.CatchUp(Guid.CreateVersion7(), 9, ["alice"]); // no expectation here: left to the cursor check
        Assert.Single(_filler.Requests);
        await carol.WaitForAsync(1);
        Assert.Equal(["s4"], carol.Labels);
    }

    [Fact]
    public async Task Offer_NoExpectationYetAndASuccessorFirst_WaitsBrieflyForItsPredecessor()
    {
        var alice = Connect("alice");

        Offer(6, "alice");
        Offer(5, "alice"); // the two racing publications of a conversation this instance had not seen
        Assert.Empty(alice.Socket.Sent);
        _time.Advance(OrderGate.UnknownHold * 2);

        await alice.WaitForAsync(2);
        Assert.Equal(["s5", "s6"], alice.Labels);
        Offer(7, "alice");
        await alice.WaitForAsync(3);
        Assert.Equal("s7", alice.Labels[^1]);
    }

    [Fact]
    public async Task Prime_ThenTheSuccessorFirst_HeldUntilThePredecessorArrives()
    {
        var alice = Connect("alice");
        _gate.Prime(Conversation, 4);

        Offer(6, "alice");
        Offer(5, "alice");

        await alice.WaitForAsync(2);
        Assert.Equal(["s5", "s6"], alice.Labels);
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task Prime_AfterTheOnlyRecipientHereLeftAndAnotherCame_TheNewExpectationHoldsARacingSuccessor()
    {
        var alice = await OnlyRecipientLeftThenAliceConnectsAsync(TimeSpan.FromSeconds(5));
        _gate.Prime(Conversation, 5);
        Offer(7, "alice");
        Offer(6, "alice");

        await alice.WaitForAsync(2);
        Assert.Equal(["s6", "s7"], alice.Labels);
        Assert.Empty(_filler.Requests);
    }

    [Fact]
    public async Task Prime_OfAConversationWhoseFirstEventCameBeforeAnySocket_HoldsARacingSuccessor()
    {
        Offer(1, "alice"); // created before alice connected here: the expectation (2) dates from then
        _time.Advance(TimeSpan.FromSeconds(1));
        var alice = Connect("alice");
        _gate.Prime(Conversation, 1);

        Offer(3, "alice");
        Offer(2, "alice");

        await alice.WaitForAsync(2);
        Assert.Equal(["s2", "s3"], alice.Labels);
    }

    [Fact]
    public async Task Offer_UnsequencedFrames_PassWhileSequencedOnesAreHeld()
    {
        var alice = Connect("alice");
        Offer(1, "alice");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Offer(3, "alice");

        _gate.Offer(new FanoutMessage(["alice"], FanoutNode.Frame("receipt")));

        await alice.WaitForAsync(2);
        Assert.Equal(["s1", "receipt"], alice.Labels);
    }

    [Fact]
    public async Task Offer_ReadBackFails_HeldFramesStillGoOut()
    {
        var alice = Connect("alice");
        _filler.Fail = true;
        Offer(1, "alice");
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Offer(3, "alice");

        _time.Advance(Hold * 2);

        await alice.WaitForAsync(2);
        Assert.Equal(["s1", "s3"], alice.Labels);
        Assert.Equal(0, _gate.Waiting);
    }

    [Fact]
    public async Task Offer_AfterTenQuietMinutesWithTheRecipientConnected_ALostPredecessorIsReadBack()
    {
        var alice = await QuietForElevenMinutesAsync();

        // Seq 2's publication was lost (its instance crashed after the commit, or its queue was full); seq 3 arrives.
        Offer(3, "alice");
        _time.Advance(OrderGate.UnknownHold * 2);
        Assert.Equal(1, _gate.Waiting); // a gap like any other: held for the full hold, not started afresh
        _time.Advance(Hold * 2);

        await alice.WaitForAsync(3);
        Assert.Equal(["s1", "s2", "s3"], alice.Labels);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal((1L, 2L), (request.AfterSeq, request.UptoSeq));
        Assert.Equal(["alice"], request.Users);
    }

    [Fact]
    public async Task Offer_AfterTenQuietMinutes_APredecessorLateByLessThanTheHoldStillGoesFirst()
    {
        var alice = await QuietForElevenMinutesAsync();

        Offer(3, "alice"); // seqs 2 and 3 race from two instances: 3 first, 2 later than the brief wait, within the hold
        _time.Advance(OrderGate.UnknownHold * 2);
        Offer(2, "alice");

        await alice.WaitForAsync(3);
        Assert.Equal(["s1", "s2", "s3"], alice.Labels);
        Assert.Empty(_filler.Requests);
    }

    [Fact]
    public async Task CatchUp_AfterTenQuietMinutesWithTheRecipientConnected_ReadsBackTheLostLastEvent()
    {
        var alice = await QuietForElevenMinutesAsync();

        // Redis was unreachable; seq 2, committed elsewhere meanwhile, is the conversation's last: no later event reveals it.
        _gate.CatchUp(Conversation, 2, ["alice"]);

        await alice.WaitForAsync(2);
        Assert.Equal(["s1", "s2"], alice.Labels);
        var request = Assert.Single(_filler.Requests);
        Assert.Equal((1L, 2L), (request.AfterSeq, request.UptoSeq));
        Assert.Equal(1, _gate.Tracked);
        Assert.Equal(0, _gate.DormantCount);
    }

    [Fact]
    public async Task Evict_MoreQuietConversationsThanTheBound_TheOldestExpectationsGo()
    {
        using var gate = new OrderGate(_hub, _filler, _time, Hold, TestMetrics.Unobserved, NullLogger<OrderGate>.Instance, maxDormant: 2);
        var alice = Connect("alice");
        Guid[] conversations = [Guid.CreateVersion7(), Guid.CreateVersion7(), Guid.CreateVersion7()];
        foreach (var conversation in conversations)
        {
            gate.Offer(new FanoutMessage(["alice"], FanoutNode.Frame("s1", conversation, 1)));
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        await alice.WaitForAsync(3);
        AdvanceInSteps(TimeSpan.FromMinutes(11));
        Assert.Equal((0, 2), (gate.Tracked, gate.DormantCount));

        // The oldest conversation lost its expectation: its next frame is a new start after the brief wait, not a gap.
        gate.Offer(new FanoutMessage(["alice"], FanoutNode.Frame("old-s3", conversations[0], 3)));
        gate.Offer(new FanoutMessage(["alice"], FanoutNode.Frame("new-s3", conversations[2], 3)));
        _time.Advance(OrderGate.UnknownHold * 2);
        await alice.WaitForAsync(4);
        Assert.Equal("old-s3", alice.Labels[^1]);
        Assert.Equal(1, gate.Waiting); // the newest still knows it expects seq 2
    }

    public async ValueTask DisposeAsync()
    {
        _gate.Dispose();
        foreach (var device in _devices)
        {
            await device.DisconnectAsync();
        }
    }

    private void Offer(long seq, params string[] users) =>
        _gate.Offer(new FanoutMessage(users, FanoutNode.Frame($"s{seq}", Conversation, seq)));

    /// <summary>Alice gets seq 1, then the conversation is quiet for eleven minutes while she stays connected.</summary>
    private async Task<FanoutNode.Device> QuietForElevenMinutesAsync()
    {
        var alice = Connect("alice");
        _gate.Prime(Conversation, 0);
        Offer(1, "alice");
        await alice.WaitForAsync(1);

        AdvanceInSteps(TimeSpan.FromMinutes(11));
        Assert.Equal((0, 1), (_gate.Tracked, _gate.DormantCount)); // only the expectation is kept
        return alice;
    }

    /// <summary>Moves the clock in steps, so that the gate's sweep (and its eviction every ten seconds) runs on the way.</summary>
    private void AdvanceInSteps(TimeSpan span)
    {
        for (var moved = TimeSpan.Zero; moved < span; moved += TimeSpan.FromSeconds(10))
        {
            _time.Advance(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>
    /// Bob, the only recipient here, got seq 1 and left; the conversation's next seqs went to instances holding bob and
    /// alice, not here, for <paramref name="away"/>; then alice connects (her socket not primed).
    /// </summary>
    private async Task<FanoutNode.Device> OnlyRecipientLeftThenAliceConnectsAsync(TimeSpan away)
    {
        var bob = Connect("bob");
        Offer(1, "bob", "alice");
        await bob.WaitForAsync(1);
        await bob.DisconnectAsync();
        _time.Advance(away);
        return Connect("alice");
    }

    private FanoutNode.Device Connect(string userId)
    {
        var device = FanoutNode.Device.Open(_hub, userId);
        _devices.Add(device);
        return device;
    }

    private sealed class RecordingFiller : IGapFiller
    {
        public List<(Guid ConversationId, long AfterSeq, long UptoSeq, string[] Users)> Requests { get; } = [];

        public bool Fail { get; set; }

        /// <summary>The read completes only after this task does.</summary>
        public Task Until { get; set; } = Task.CompletedTask;

        public async Task<IReadOnlyList<FanoutPart>> ReadGapAsync(
            Guid conversationId, long afterSeq, long uptoSeq, IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
        {
            Requests.Add((conversationId, afterSeq, uptoSeq, [.. userIds]));
            await Until;
            if (Fail)
            {
                throw new TimeoutException("store down");
            }

            return [.. Enumerable.Range((int)afterSeq + 1, (int)(uptoSeq - afterSeq))
                .Select(s => new FanoutPart([.. userIds], FanoutNode.Frame($"s{s}", conversationId, s)))];
        }

        public Task<IReadOnlyDictionary<Guid, long>> ReadLastSeqsAsync(string userId, CancellationToken cancellationToken) =>
            throw new NotSupportedException("the gate itself never reads them");

        public Task<IReadOnlyList<OutboundFrame>> ReadWatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken) =>
            throw new NotSupportedException("the gate itself never reads them");

        public void RecheckCursors() => throw new NotSupportedException("the gate itself never asks for them");
    }
}

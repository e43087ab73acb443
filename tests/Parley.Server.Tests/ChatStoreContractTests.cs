using Parley.Server.Hosting;
using Parley.Server.Storage;

namespace Parley.Server.Tests;

/// <summary>
/// The storage seam's contract: what every <see cref="IChatStore"/> must do, whatever the database. Each
/// implementation runs this suite through a subclass that supplies fresh stores (SQLite and PostgreSQL).
/// Rules are passed in as callbacks, so these tests call the store directly with rules of their own; their
/// rejections are the API's errors (<see cref="ApiError"/>), which the store passes back without looking at them.
/// </summary>
public abstract class ChatStoreContractTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly CancellationTokenSource _timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
    private IChatStore? _store;

    protected ChatStoreContractTests() => _timeout.CancelAfter(Timeout);

    /// <summary>The store under test, migrated.</summary>
    private protected IChatStore Store => _store ?? throw new InvalidOperationException("InitializeAsync has not run.");

    /// <summary>Bounds every store call of a test.</summary>
    private protected CancellationToken Ct => _timeout.Token;

    /// <summary>
    /// Whether the store gives events their stream positions in the transaction that writes them (SQLite, one
    /// commit at a time) instead of a sequencer pass after commit (PostgreSQL).
    /// </summary>
    private protected virtual bool PositionsAtCommit => false;

    /// <summary>Whole milliseconds: the precision every store keeps.</summary>
    private protected static DateTimeOffset Now { get; } = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    /// <summary>A store over a new, empty database that nothing else uses, not yet migrated. The subclass disposes it.</summary>
    private protected abstract IChatStore CreateStore();

    /// <summary>
    /// Every durable event of a conversation of <see cref="Store"/>'s database, in seq order, read with SQL of the test's
    /// own: production reads events only by stream position (<see cref="IChatStore.ReadUserEventsAsync"/>).
    /// </summary>
    private protected abstract Task<IReadOnlyList<ConversationEvent>> ReadEventsAsync(Guid conversationId);

    /// <summary>The columns <see cref="ReadEventsAsync"/> selects, in the order <see cref="ConversationEvent"/> takes them.</summary>
    private protected const string EventsSql =
        "SELECT conversation_id, seq, type, message_id, actor_id, user_id, role, created_at FROM conversation_events WHERE conversation_id = @c ORDER BY seq";

    public virtual async ValueTask InitializeAsync()
    {
        _store = CreateStore();
        await Store.MigrateAsync(Ct);
    }

    public virtual ValueTask DisposeAsync()
    {
        _timeout.Dispose();
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task IsReadyAsync_BeforeAndAfterMigration_FalseThenTrue()
    {
        var fresh = CreateStore();

        Assert.False(await fresh.IsReadyAsync(Ct));
        await fresh.MigrateAsync(Ct);
        Assert.True(await fresh.IsReadyAsync(Ct));
    }

    [Fact]
    public async Task MigrateAsync_FreshDatabaseThenAgain_ReturnsEveryScriptInOrderThenNone()
    {
        // The start-up log and the migrate command say what was applied: the store reports it.
        var fresh = CreateStore();

        var first = await fresh.MigrateAsync(Ct);
        var second = await fresh.MigrateAsync(Ct);

        Assert.NotEmpty(first);
        Assert.All(first, name => Assert.Matches("^[0-9]{4}_[a-z0-9_]+$", name));
        Assert.Equal(first.Order(StringComparer.Ordinal), first);
        Assert.Equal("0001_initial", first[0]);
        Assert.Empty(second);
    }

    [Fact]
    public async Task MigrateAsync_RunAgainOverData_IsANoOpThatKeepsEverything()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "kept");

        await Store.MigrateAsync(Ct);
        await Store.MigrateAsync(Ct);

        Assert.True(await Store.IsReadyAsync(Ct));
        Assert.Equal(message, await Store.GetMessageAsync(message.Id, Ct));
        Assert.Equal(2, (await Store.GetConversationAsync(conversation, Ct))!.Members.Count);
        Assert.Equal(3, (await AppendAsync(conversation, "bob", "still writable")).Seq);
    }

    [Fact]
    public async Task CreateConversation_IsItsFirstEventAtSeqOne()
    {
        var id = Guid.CreateVersion7();

        var created = await Store.CreateConversationAsync(
            new NewConversation(id, "group", "team", "alice", [("alice", "owner"), ("bob", "member")], null, Now), Ct);

        Assert.True(created.Created);
        Assert.Equal(1, created.Snapshot.Conversation.LastSeq);
        Assert.Equal(["alice", "bob"], created.Snapshot.Members.Select(m => m.UserId).Order(StringComparer.Ordinal));
        var evt = Assert.Single(await ReadEventsAsync(id));
        Assert.Equal((id, 1L, EventTypes.ConversationCreated, "alice"), (evt.ConversationId, evt.Seq, evt.Type, evt.ActorId));
        Assert.Equal(Now, evt.CreatedAt);
    }

    [Fact]
    public async Task CreateConversation_SameDirectKeyTwice_ReturnsTheExistingOneAndWritesNothing()
    {
        var first = await Store.CreateConversationAsync(Direct("alice", "bob"), Ct);

        var second = await Store.CreateConversationAsync(Direct("bob", "alice"), Ct);

        Assert.True(first.Created);
        Assert.False(second.Created);
        Assert.Equal(first.Snapshot.Conversation.Id, second.Snapshot.Conversation.Id);
        Assert.Single(await ReadEventsAsync(first.Snapshot.Conversation.Id));
        Assert.Null(await Store.GetConversationAsync(Direct("bob", "alice").Id, Ct));
    }

    [Fact]
    public async Task Events_AfterEveryKindOfChange_AreRecordedInSeqOrderWithoutGaps()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var first = await AppendAsync(conversation, "alice", "one");
        var second = await AppendAsync(conversation, "bob", "two");
        var edited = Succeeded(await Store.EditMessageAsync(first.Id, "alice", "one, edited", null, Accept, Now, Ct));
        var deleted = Succeeded(await Store.DeleteMessageAsync(second.Id, "alice", Accept, Now, Ct));
        var added = await ChangeAsync(conversation, "alice", new MembershipChange.Add("carol", "member"));
        var promoted = await ChangeAsync(conversation, "alice", new MembershipChange.SetRole("carol", "admin"));
        var removed = await ChangeAsync(conversation, "alice", new MembershipChange.Remove("carol"));
        var third = await AppendAsync(conversation, "bob", "three");

        var events = await ReadEventsAsync(conversation);

        Assert.Equal(Enumerable.Range(1, 9).Select(i => (long)i), events.Select(e => e.Seq));
        Assert.All(events, e => Assert.Equal(conversation, e.ConversationId));
        Assert.Equal(
            [
                EventTypes.ConversationCreated, EventTypes.MessageCreated, EventTypes.MessageCreated, EventTypes.MessageEdited,
                EventTypes.MessageDeleted, EventTypes.ParticipantAdded, EventTypes.ParticipantUpdated, EventTypes.ParticipantRemoved,
                EventTypes.MessageCreated,
            ],
            events.Select(e => e.Type));
        Assert.Equal(
            [null, first.Id, second.Id, first.Id, second.Id, null, null, null, third.Id],
            events.Select(e => e.MessageId));
        Assert.Equal(["alice", "alice", "bob", "alice", "alice", "alice", "alice", "alice", "bob"], events.Select(e => e.ActorId));
        Assert.Equal([null, null, null, null, null, "carol", "carol", "carol", null], events.Select(e => e.UserId));
        Assert.Equal(["member", "admin"], events.Skip(5).Take(2).Select(e => e.Role));

        // The seqs the writes reported are the seqs the replay shows.
        Assert.Equal([first.Seq, second.Seq, edited.Seq, deleted.Seq, third.Seq], events.Where(e => e.MessageId is not null).Select(e => e.Seq));
        Assert.Equal(
            [added.Applied.Single().Event.Seq, promoted.Applied.Single().Event.Seq, removed.Applied.Single().Event.Seq],
            [events[5].Seq, events[6].Seq, events[7].Seq]);
        Assert.Equal(9, (await Store.GetConversationAsync(conversation, Ct))!.Conversation.LastSeq);
    }

    [Fact]
    public async Task ReadUserEvents_AfterPositionUpToAndLimit_ReturnsThatWindow()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        for (var i = 0; i < 6; i++)
        {
            await AppendAsync(conversation, "alice", $"m{i}");
        }

        await PositionEverythingAsync();
        var upto = (await Store.GetStreamPositionAsync(Ct)).Pos;

        // One conversation: positions 1..7 are its seqs 1..7.
        var window = await Store.ReadUserEventsAsync("bob", 3, upto, 2, Ct);
        Assert.Equal([4L, 5L], window.Select(e => e.Event.Seq));
        Assert.Equal([4L, 5L], window.Select(e => e.Pos!.Value));
        Assert.All(window, e => Assert.Equal((conversation, 0L, (long?)null), (e.Event.ConversationId, e.JoinedSeq, e.LeftSeq)));
        Assert.Equal([6L, 7L], (await Store.ReadUserEventsAsync("bob", 5, upto, 100, Ct)).Select(e => e.Event.Seq));
        Assert.Empty(await Store.ReadUserEventsAsync("bob", 7, upto, 100, Ct));
        Assert.Empty(await Store.ReadUserEventsAsync("carol", 0, upto, 100, Ct));
        Assert.Empty(await ReadEventsAsync(Guid.CreateVersion7()));
    }

    [Fact]
    public async Task ReadUserEvents_NewerThanUpto_ReturnsLaterAndUnpositionedEventsBySeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        await AppendAsync(conversation, "alice", "positioned"); // 2
        await PositionEverythingAsync();
        var upto = (await Store.GetStreamPositionAsync(Ct)).Pos;
        await AppendAsync(conversation, "alice", "not yet positioned"); // 3

        var newer = await Store.ReadUserEventsNewerAsync("bob", upto, after: null, 100, Ct);

        Assert.Equal(2, upto);
        var only = Assert.Single(newer);
        Assert.Equal((conversation, 3L, PositionsAtCommit ? 3L : (long?)null), (only.Event.ConversationId, only.Event.Seq, only.Pos));
    }

    [Fact]
    public async Task ReadUserEventsNewer_InPages_ReturnsEachEventOnceByConversationAndSeq()
    {
        var first = await CreateGroupAsync("alice", "bob");
        var second = await CreateGroupAsync("carol", "bob");
        await PositionEverythingAsync();
        var upto = (await Store.GetStreamPositionAsync(Ct)).Pos;
        for (var i = 0; i < 3; i++)
        {
            await AppendAsync(first, "alice", $"a{i}");
            await AppendAsync(second, "carol", $"c{i}");
        }

        await AppendAsync(await CreateGroupAsync("alice", "carol"), "alice", "not bob's");
        var expected = new[] { first, second }.SelectMany(c => new[] { (c, 2L), (c, 3L), (c, 4L) }).ToList();

        var read = new List<(Guid, long)>();
        (Guid, long)? after = null;
        for (var page = 0; page < 10; page++)
        {
            var events = await Store.ReadUserEventsNewerAsync("bob", upto, after, 4, Ct);
            read.AddRange(events.Select(e => (e.Event.ConversationId, e.Event.Seq)));
            if (events.Count < 4)
            {
                break;
            }

            after = read[^1];
        }

        // The store's own order of conversation ids (what .Order() gives for Guid may differ from a database's), so
        // compare sets and the order within each conversation.
        Assert.Equal(expected.Order(), read.Order());
        Assert.Equal(read.Count, read.Distinct().Count());
        Assert.All(read.GroupBy(e => e.Item1), g => Assert.Equal([2L, 3L, 4L], g.Select(e => e.Item2)));
        // One conversation's events, then the other's: never interleaved.
        Assert.Single(read.Zip(read.Skip(1)), pair => pair.First.Item1 != pair.Second.Item1);
    }

    [Fact]
    public async Task AppendMessage_FailingRule_WritesNothingAndConsumesNoSeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var rejection = ApiError.Forbidden("rule says no");
        SendFacts? seen = null;

        var result = await Store.AppendMessageAsync(NewText(conversation, "alice", "rejected", "k-1"), facts =>
        {
            seen = facts;
            return rejection;
        }, Ct);

        Assert.False(result.IsApplied);
        Assert.Same(rejection, result.Rejection);
        Assert.Equal(conversation, seen?.Conversation?.Conversation.Id);
        Assert.Null(seen!.Existing);
        await AssertUntouchedAsync(conversation, lastSeq: 1);
        // The rejected send left no trace: not its seq, not its client_message_id.
        var next = Succeeded(await Store.AppendMessageAsync(NewText(conversation, "alice", "accepted", "k-1"), Accept, Ct));
        Assert.True(next.Created);
        Assert.Equal(2, next.Message.Seq);
    }

    [Fact]
    public async Task AppendMessage_UnknownConversation_RuleSeesNoConversationAndNothingIsWritten()
    {
        var unknown = Guid.CreateVersion7();
        SendFacts? seen = null;

        var result = await Store.AppendMessageAsync(NewText(unknown, "alice", "into the void"), facts =>
        {
            seen = facts;
            return ApiError.NotFound("Conversation");
        }, Ct);

        Assert.Equal(404, result.Rejection?.Status);
        Assert.NotNull(seen);
        Assert.Null(seen.Conversation);
        Assert.Null(await Store.GetConversationAsync(unknown, Ct));
        Assert.Empty(await ReadEventsAsync(unknown));
    }

    [Fact]
    public async Task AppendMessage_RuleSeesTheReplyTarget()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var target = await AppendAsync(conversation, "alice", "question");
        SendFacts? seen = null;

        Succeeded(await Store.AppendMessageAsync<ApiError>(NewText(conversation, "bob", "answer") with { ReplyToId = target.Id }, facts =>
        {
            seen = facts;
            return null;
        }, Ct));

        Assert.Equal(target, seen?.ReplyTarget);
    }

    [Fact]
    public async Task AppendMessage_RepeatedClientMessageId_GivesTheRuleTheOriginalAndReturnsItWithoutANewSeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var original = Succeeded(await Store.AppendMessageAsync(NewText(conversation, "alice", "once", "k-1"), Accept, Ct));
        SendFacts? seen = null;

        var retry = Succeeded(await Store.AppendMessageAsync<ApiError>(NewText(conversation, "alice", "once", "k-1"), facts =>
        {
            seen = facts;
            return null;
        }, Ct));
        var otherSender = Succeeded(await Store.AppendMessageAsync(NewText(conversation, "bob", "once", "k-1"), Accept, Ct));

        Assert.Equal(original.Message, seen?.Existing);
        Assert.False(retry.Created);
        Assert.Equal(original.Message, retry.Message);
        Assert.True(otherSender.Created);
        Assert.Equal(3, otherSender.Message.Seq);
        Assert.Equal(2, (await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 100), Ct)).Count);
    }

    [Fact]
    public async Task EditMessage_FailingRule_WritesNothing()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "original");
        var rejection = ApiError.Forbidden("rule says no");

        var result = await Store.EditMessageAsync(message.Id, "alice", "changed", null, _ => rejection, Now.AddSeconds(1), Ct);

        Assert.Same(rejection, result.Rejection);
        Assert.Equal(message, await Store.GetMessageAsync(message.Id, Ct));
        Assert.Empty(await Store.GetEditsAsync(message.Id, Ct));
        await AssertUntouchedAsync(conversation, lastSeq: message.Seq);
    }

    [Fact]
    public async Task DeleteMessage_FailingRule_WritesNothing()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "original");
        Succeeded(await Store.EditMessageAsync(message.Id, "alice", "edited", null, Accept, Now, Ct));
        var before = await Store.GetMessageAsync(message.Id, Ct);
        var bobBefore = await Store.GetMemberAsync(conversation, "bob", Ct);
        var rejection = ApiError.Forbidden("rule says no");

        var result = await Store.DeleteMessageAsync(message.Id, "bob", _ => rejection, Now, Ct);

        Assert.Same(rejection, result.Rejection);
        Assert.Equal(before, await Store.GetMessageAsync(message.Id, Ct));
        Assert.Single(await Store.GetEditsAsync(message.Id, Ct));
        Assert.Equal(bobBefore, await Store.GetMemberAsync(conversation, "bob", Ct));
        await AssertUntouchedAsync(conversation, lastSeq: message.Seq + 1);
    }

    [Fact]
    public async Task ChangeMembership_FailingDecision_WritesNothing()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var before = await Store.GetConversationAsync(conversation, Ct);
        var rejection = ApiError.Forbidden("rule says no");

        var result = await Store.ChangeMembershipAsync<ApiError>(conversation, "bob", _ => rejection, Now, Ct);

        Assert.Same(rejection, result.Rejection);
        Assert.Equal(before!.Members, (await Store.GetConversationAsync(conversation, Ct))!.Members);
        await AssertUntouchedAsync(conversation, lastSeq: 1);
    }

    [Fact]
    public async Task ChangeMembership_UnknownConversation_IsRefusedWithoutAskingTheRules()
    {
        var unknown = Guid.CreateVersion7();
        var asked = false;

        var result = await Store.ChangeMembershipAsync<ApiError>(unknown, "alice", _ =>
        {
            asked = true;
            return new MembershipChange[] { new MembershipChange.Add("bob", "member") };
        }, Now, Ct);

        Assert.Equal((StoreRefusal?)StoreRefusal.ConversationNotFound, result.Refusal);
        Assert.Null(result.Rejection);
        Assert.False(asked);
        Assert.Null(await Store.GetConversationAsync(unknown, Ct));
        Assert.Empty(await ReadEventsAsync(unknown));
    }

    [Fact]
    public async Task EditAndDeleteMessage_UnknownMessage_AreRefusedWithoutAskingTheRules()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var unknown = Guid.CreateVersion7();
        var asked = false;
        ApiError? Rule(MessageFacts facts)
        {
            asked = true;
            return null;
        }

        var edit = await Store.EditMessageAsync(unknown, "alice", "changed", null, Rule, Now, Ct);
        var delete = await Store.DeleteMessageAsync(unknown, "alice", Rule, Now, Ct);

        Assert.Equal((StoreRefusal?)StoreRefusal.MessageNotFound, edit.Refusal);
        Assert.Equal((StoreRefusal?)StoreRefusal.MessageNotFound, delete.Refusal);
        Assert.Null(edit.Rejection);
        Assert.Null(delete.Rejection);
        Assert.False(asked);
        await AssertUntouchedAsync(conversation, lastSeq: 1);
    }

    [Fact]
    public async Task AdvanceRead_NotAMemberOrAMessageTheMemberCannotSee_IsRefusedAndMovesNothing()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var other = await CreateGroupAsync("alice", "bob");
        var beforeCarol = await AppendAsync(conversation, "alice", "before carol joined"); // 2
        await ChangeAsync(conversation, "alice", new MembershipChange.Add("carol", "member")); // 3
        var elsewhere = await AppendAsync(other, "alice", "in the other conversation");
        var bob = await Store.GetMemberAsync(conversation, "bob", Ct);
        var carol = await Store.GetMemberAsync(conversation, "carol", Ct);

        var notAMember = await Store.AdvanceReadAsync(conversation, "dave", beforeCarol.Id, Now, Ct);
        var beforeJoining = await Store.AdvanceReadAsync(conversation, "carol", beforeCarol.Id, Now, Ct);
        var otherConversation = await Store.AdvanceReadAsync(conversation, "bob", elsewhere.Id, Now, Ct);
        var unknownMessage = await Store.AdvanceReadAsync(conversation, "bob", Guid.CreateVersion7(), Now, Ct);
        var unknownConversation = await Store.AdvanceReadAsync(Guid.CreateVersion7(), "bob", beforeCarol.Id, Now, Ct);

        Assert.Equal(
            [StoreRefusal.NotAMember, StoreRefusal.MessageNotFound, StoreRefusal.MessageNotFound, StoreRefusal.MessageNotFound, StoreRefusal.NotAMember],
            new[] { notAMember, beforeJoining, otherConversation, unknownMessage, unknownConversation }.Select(r => r.Refusal!.Value));
        Assert.Equal(bob, await Store.GetMemberAsync(conversation, "bob", Ct));
        Assert.Equal(carol, await Store.GetMemberAsync(conversation, "carol", Ct));
    }

    [Fact]
    public async Task ChangeMembership_SeveralChangesInOnePlan_EachTakesItsOwnSeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");

        var result = await ChangeAsync(
            conversation, "alice", new MembershipChange.Add("carol", "member"), new MembershipChange.Add("dave", "member"),
            new MembershipChange.SetRole("bob", "admin"));

        Assert.Equal([2L, 3L, 4L], result.Applied.Select(a => a.Event.Seq));
        Assert.Equal(4, result.After.Conversation.LastSeq);
        Assert.Equal(2, (await Store.GetMemberAsync(conversation, "carol", Ct))!.JoinedSeq);
        Assert.Equal(3, (await Store.GetMemberAsync(conversation, "dave", Ct))!.JoinedSeq);
        Assert.Equal("admin", (await Store.GetMemberAsync(conversation, "bob", Ct))!.Role);
    }

    [Fact]
    public async Task AppendMessage_ManyAtOnce_TakeContiguousSeqsWithoutGapsOrDuplicates()
    {
        var conversation = await CreateGroupAsync("alice", "bob", "carol");
        string[] senders = ["alice", "bob", "carol"];

        // No conversation lock here: the store alone must hand out seqs one at a time.
        var results = await Task.WhenAll(Enumerable.Range(0, 30).Select(i =>
            Task.Run(() => Store.AppendMessageAsync(NewText(conversation, senders[i % 3], $"m{i}"), Accept, Ct), Ct)));

        Assert.Equal(Enumerable.Range(2, 30).Select(i => (long)i), results.Select(r => Succeeded(r).Message.Seq).Order());
        Assert.Equal(Enumerable.Range(1, 31).Select(i => (long)i), (await ReadEventsAsync(conversation)).Select(e => e.Seq));
    }

    [Fact]
    public async Task Seqs_AreCountedPerConversation()
    {
        var first = await CreateGroupAsync("alice", "bob");
        var second = await CreateGroupAsync("alice", "bob");

        var a = await AppendAsync(first, "alice", "a");
        var b = await AppendAsync(second, "alice", "b");
        var c = await AppendAsync(first, "alice", "c");

        Assert.Equal((2L, 2L, 3L), (a.Seq, b.Seq, c.Seq));
        Assert.Equal([1L, 2L], (await ReadEventsAsync(second)).Select(e => e.Seq));
    }

    [Fact]
    public async Task EditMessage_KeepsEarlierVersionsOldestFirstAndAnUnchangedEditIsANoOp()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "v1");
        var mentions = new[] { new Mention("bob", 0, 2) };

        var second = Succeeded(await Store.EditMessageAsync(message.Id, "alice", "v2", mentions, Accept, Now.AddSeconds(1), Ct));
        var third = Succeeded(await Store.EditMessageAsync(message.Id, "alice", "v3", null, Accept, Now.AddSeconds(2), Ct));
        var same = Succeeded(await Store.EditMessageAsync(message.Id, "alice", "v3", null, Accept, Now.AddSeconds(3), Ct));

        Assert.Equal((3L, 4L, 0L), (second.Seq, third.Seq, same.Seq));
        Assert.Equal("v3", same.Message.Content);
        Assert.Equal(Now.AddSeconds(2), same.Message.EditedAt);
        var versions = await Store.GetEditsAsync(message.Id, Ct);
        Assert.Equal([1, 2], versions.Select(v => v.Version));
        Assert.Equal(["v1", "v2"], versions.Select(v => v.Content));
        Assert.Null(versions[0].Mentions);
        Assert.Equal(mentions, versions[1].Mentions!);
        Assert.Equal((Now, Now.AddSeconds(1)), (versions[0].CreatedAt, versions[0].ReplacedAt));
        Assert.Equal((Now.AddSeconds(1), Now.AddSeconds(2)), (versions[1].CreatedAt, versions[1].ReplacedAt));
        Assert.Equal(4, (await Store.GetConversationAsync(conversation, Ct))!.Conversation.LastSeq);
    }

    [Fact]
    public async Task DeleteMessage_LeavesATombstoneErasesTheEditsAndARepeatTakesNoSeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = Succeeded(await Store.AppendMessageAsync(
            NewText(conversation, "alice", "@bob see") with
            {
                MessageType = "image",
                Mentions = [new Mention("bob", 0, 4)],
                Media = new Media("https://cdn.example.com/p.png", "image/png", 42, 10, 20, null, "p.png", null),
            },
            Accept, Ct)).Message;
        Succeeded(await Store.EditMessageAsync(message.Id, "alice", "@bob look", [new Mention("bob", 0, 4)], Accept, Now, Ct));

        var deleted = Succeeded(await Store.DeleteMessageAsync(message.Id, "alice", Accept, Now.AddSeconds(5), Ct));
        var again = Succeeded(await Store.DeleteMessageAsync(message.Id, "alice", Accept, Now.AddSeconds(9), Ct));

        Assert.Equal(4, deleted.Seq);
        Assert.Equal(0, again.Seq);
        var tombstone = await Store.GetMessageAsync(message.Id, Ct);
        Assert.NotNull(tombstone);
        Assert.Equal((null, null, null, null), (tombstone.Content, tombstone.Mentions, tombstone.Media, tombstone.Location));
        Assert.Equal(Now.AddSeconds(5), tombstone.DeletedAt);
        Assert.Equal((message.Seq, "alice", "image"), (tombstone.Seq, tombstone.SenderId, tombstone.MessageType));
        Assert.Equal(tombstone, again.Message);
        Assert.Empty(await Store.GetEditsAsync(message.Id, Ct));
        Assert.Equal(4, (await Store.GetConversationAsync(conversation, Ct))!.Conversation.LastSeq);
    }

    [Fact]
    public async Task UnreadCount_StoredCounterFollowsSendsDeletesAndReads()
    {
        var conversation = await CreateGroupAsync("alice", "bob", "carol");
        var m1 = await AppendAsync(conversation, "alice", "one");
        var m2 = await AppendAsync(conversation, "alice", "two");
        var m3 = await AppendAsync(conversation, "bob", "three");

        Assert.Equal((1, 0, 3), await UnreadAsync(conversation));
        var bob = (await Store.GetMemberAsync(conversation, "bob", Ct))!;
        Assert.Equal((m3.Seq, m3.Id), (bob.ReadSeq, bob.ReadMessageId)); // sending reads up to one's own message

        Succeeded(await Store.AdvanceReadAsync(conversation, "carol", m1.Id, Now, Ct));
        Assert.Equal((1, 0, 2), await UnreadAsync(conversation));

        Succeeded(await Store.DeleteMessageAsync(m1.Id, "alice", Accept, Now, Ct)); // already read by bob and carol
        Assert.Equal((1, 0, 2), await UnreadAsync(conversation));

        Succeeded(await Store.DeleteMessageAsync(m2.Id, "alice", Accept, Now, Ct)); // unread by carol
        Assert.Equal((1, 0, 1), await UnreadAsync(conversation));

        Succeeded(await Store.DeleteMessageAsync(m3.Id, "bob", Accept, Now, Ct)); // unread by alice and carol
        Assert.Equal((0, 0, 0), await UnreadAsync(conversation));
    }

    [Fact]
    public async Task AdvanceRead_MovesForwardOnlyAndCarriesDeliveredAlong()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var m1 = await AppendAsync(conversation, "alice", "one");
        var m2 = await AppendAsync(conversation, "alice", "two");

        var forward = Succeeded(await Store.AdvanceReadAsync(conversation, "bob", m2.Id, Now, Ct));
        var backward = Succeeded(await Store.AdvanceReadAsync(conversation, "bob", m1.Id, Now, Ct));

        Assert.True(forward.ReadAdvanced);
        Assert.Equal((m2.Seq, m2.Id, m2.Seq), (forward.After.ReadSeq, forward.After.ReadMessageId, forward.After.DeliveredSeq));
        Assert.False(backward.ReadAdvanced);
        Assert.Equal(forward.After, backward.After);
        // Receipts are not in the sequence: creation and the two messages are all there is.
        Assert.Equal([1L, m1.Seq, m2.Seq], (await ReadEventsAsync(conversation)).Select(e => e.Seq));
    }

    [Fact]
    public async Task AdvanceDelivered_MovesToTheNewestMessageUpToTheSeqAndNamesItsSenders()
    {
        var conversation = await CreateGroupAsync("alice", "bob", "carol");
        var m1 = await AppendAsync(conversation, "alice", "one");
        var m2 = await AppendAsync(conversation, "carol", "two");
        await AppendAsync(conversation, "alice", "three");

        var batch = await Store.AdvanceDeliveredAsync([new DeliveryReport(conversation, "bob", m2.Seq)], Now, Ct);

        var moved = Assert.Single(batch.Moved);
        Assert.Equal((m2.Seq, m2.Id), (moved.After.DeliveredSeq, moved.After.DeliveredMessageId));
        Assert.Equal(["alice", "carol"], moved.NotifySenders.Order(StringComparer.Ordinal));
        Assert.True(moved.Before.DeliveredSeq < m1.Seq);
        var bob = (await Store.GetMemberAsync(conversation, "bob", Ct))!;
        Assert.Equal((m2.Seq, m2.Id), (bob.DeliveredSeq, bob.DeliveredMessageId));
    }

    /// <summary>
    /// Whom a delivered batch notifies: the senders of the messages between each member's last watermark and its new one,
    /// only those still members, never the member itself; for every report of the batch on its own range.
    /// </summary>
    [Fact]
    public async Task AdvanceDelivered_NamesTheSendersOfEachReportsNewMessagesWhoAreStillMembers()
    {
        var conversation = await CreateGroupAsync("alice", "bob", "carol", "dave", "erin");
        var early = await AppendAsync(conversation, "erin", "delivered to bob before");
        Assert.Single((await Store.AdvanceDeliveredAsync([new DeliveryReport(conversation, "bob", early.Seq)], Now, Ct)).Moved);
        await AppendAsync(conversation, "alice", "one"); // her own watermarks move with it
        await AppendAsync(conversation, "carol", "two");
        await ChangeAsync(conversation, "alice", new MembershipChange.Remove("carol"));
        var last = await AppendAsync(conversation, "dave", "three");

        var batch = await Store.AdvanceDeliveredAsync(
            [new DeliveryReport(conversation, "bob", last.Seq), new DeliveryReport(conversation, "alice", last.Seq)], Now, Ct);

        var byMember = batch.Moved.ToDictionary(m => m.Before.UserId);
        Assert.Equal(2, byMember.Count);
        // Bob had erin's message already, and carol has left.
        Assert.Equal(["alice", "dave"], byMember["bob"].NotifySenders.Order(StringComparer.Ordinal));
        // Alice's range starts after her own message: carol's (she has left) and dave's.
        Assert.Equal(["dave"], byMember["alice"].NotifySenders);
    }

    [Fact]
    public async Task AdvanceDelivered_BehindTheReadWatermarkOrForANonMember_MovesNothing()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var m1 = await AppendAsync(conversation, "alice", "one");
        var m2 = await AppendAsync(conversation, "alice", "two");
        Succeeded(await Store.AdvanceReadAsync(conversation, "bob", m2.Id, Now, Ct));

        // A late report of an older message must not move the watermark back.
        var batch = await Store.AdvanceDeliveredAsync(
            [new DeliveryReport(conversation, "bob", m1.Seq), new DeliveryReport(conversation, "mallory", m2.Seq)], Now, Ct);

        Assert.Empty(batch.Moved);
        var bob = (await Store.GetMemberAsync(conversation, "bob", Ct))!;
        Assert.Equal((m2.Seq, m2.Id), (bob.DeliveredSeq, bob.DeliveredMessageId));
    }

    [Fact]
    public async Task AdvanceDelivered_ALateReportOfAMemberWhoHasLeft_MovesNothingAndNotifiesNoOne()
    {
        // A report queued before the leave lands after it: a former member's receipts are no one's business.
        var conversation = await CreateGroupAsync("alice", "bob", "carol");
        var m1 = await AppendAsync(conversation, "alice", "one");
        await ChangeAsync(conversation, "alice", new MembershipChange.Remove("carol"));

        var batch = await Store.AdvanceDeliveredAsync(
            [new DeliveryReport(conversation, "carol", m1.Seq), new DeliveryReport(conversation, "bob", m1.Seq)], Now, Ct);

        var moved = Assert.Single(batch.Moved);
        Assert.Equal("bob", moved.Before.UserId);
        Assert.Equal(["alice"], moved.NotifySenders);
    }

    [Fact]
    public async Task AdvanceDelivered_ABatchLargerThanOneStatement_MovesEveryMemberToItsOwnTarget()
    {
        // 5 groups of 50 and a stranger each: more reports than one statement carries, in one call.
        var reports = new List<DeliveryReport>();
        var expected = new Dictionary<(Guid, string), (long Seq, Guid Id, string[] Senders)>();
        for (var g = 0; g < 5; g++)
        {
            var members = Enumerable.Range(0, 50).Select(i => $"u{g}-{i:D2}").ToArray();
            var conversation = await CreateGroupAsync(members[0], members[1..]);
            var one = await AppendAsync(conversation, members[0], "one");
            var two = await AppendAsync(conversation, members[1], "two");
            await AppendAsync(conversation, members[2], "three");
            foreach (var member in members)
            {
                // Up to "two": its sender has it already, the first sender gets it, everyone else gets both.
                reports.Add(new DeliveryReport(conversation, member, two.Seq));
                if (member != members[1] && member != members[2])
                {
                    expected[(conversation, member)] = (two.Seq, two.Id, member == members[0] ? [members[1]] : [members[0], members[1]]);
                }
            }

            reports.Add(new DeliveryReport(conversation, "stranger", two.Seq));
            Assert.True(one.Seq < two.Seq);
        }

        var batch = await Store.AdvanceDeliveredAsync(reports, Now, Ct);

        Assert.Equal(expected.Count, batch.Moved.Count);
        foreach (var moved in batch.Moved)
        {
            var (seq, id, senders) = expected[(moved.ConversationId, moved.After.UserId)];
            Assert.Equal((seq, id), (moved.After.DeliveredSeq, moved.After.DeliveredMessageId));
            Assert.Equal(senders, moved.NotifySenders.Order(StringComparer.Ordinal));
            Assert.True(moved.Before.DeliveredSeq < seq);
        }

        foreach (var ((conversation, user), (seq, id, _)) in expected)
        {
            var member = (await Store.GetMemberAsync(conversation, user, Ct))!;
            Assert.Equal((seq, id), (member.DeliveredSeq, member.DeliveredMessageId));
        }
    }

    [Fact]
    public async Task AdvanceDelivered_WhileTheSameConversationsTakeSends_AppliesBothAndEndsAtTheNewestMessage()
    {
        var conversations = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            conversations.Add(await CreateGroupAsync("alice", "bob"));
        }

        // Sends and delivered reports on the same member rows at once: neither may fail, wait forever or go backwards.
        var sends = Enumerable.Range(0, 160).Select(i => Store.AppendMessageAsync(
            NewText(conversations[i % 8], i % 2 == 0 ? "alice" : "bob", $"m{i}"), Accept, Ct)).ToList();
        var reports = Enumerable.Range(0, 40).Select(i => Store.AdvanceDeliveredAsync(
            [.. conversations.Select(c => new DeliveryReport(c, "alice", long.MaxValue)), .. conversations.Select(c => new DeliveryReport(c, "bob", long.MaxValue))],
            Now, Ct)).ToList();
        await Task.WhenAll(sends);
        var batches = await Task.WhenAll(reports);
        await Store.AdvanceDeliveredAsync(
            [.. conversations.Select(c => new DeliveryReport(c, "alice", long.MaxValue)), .. conversations.Select(c => new DeliveryReport(c, "bob", long.MaxValue))],
            Now, Ct);

        Assert.All(batches.SelectMany(b => b.Moved), m => Assert.True(m.After.DeliveredSeq > m.Before.DeliveredSeq));
        foreach (var conversation in conversations)
        {
            var last = (await Store.GetConversationAsync(conversation, Ct))!.Conversation;
            foreach (var user in new[] { "alice", "bob" })
            {
                var member = (await Store.GetMemberAsync(conversation, user, Ct))!;
                Assert.Equal((last.LastSeq, last.LastMessageId), (member.DeliveredSeq, member.DeliveredMessageId));
            }
        }
    }

    [Fact]
    public async Task AdvanceRead_AfterAHigherDeliveredWatermark_KeepsDeliveredWhereItIs()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var m1 = await AppendAsync(conversation, "alice", "one");
        var m2 = await AppendAsync(conversation, "alice", "two");
        await Store.AdvanceDeliveredAsync([new DeliveryReport(conversation, "bob", m2.Seq)], Now, Ct);

        var read = Succeeded(await Store.AdvanceReadAsync(conversation, "bob", m1.Id, Now, Ct));

        Assert.Equal((m1.Seq, m2.Seq, m2.Id), (read.After.ReadSeq, read.After.DeliveredSeq, read.After.DeliveredMessageId));
    }

    [Fact]
    public async Task AppendMessage_ManyConcurrentSendsAcrossConversations_EachCommittedOnceWithGaplessSeqs()
    {
        // Concurrent sends share group commits; each still gets its own outcome, and seqs stay gapless per conversation.
        var conversations = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            conversations.Add(await CreateGroupAsync("alice", "bob"));
        }

        var sends = Enumerable.Range(0, 200).Select(i => Store.AppendMessageAsync(
            NewText(conversations[i % conversations.Count], i % 2 == 0 ? "alice" : "bob", $"m{i}", $"k-{i}"), Accept, Ct)).ToList();
        var rejected = Store.AppendMessageAsync(NewText(conversations[0], "alice", "refused", "k-refused"), _ => ApiError.Forbidden("no"), Ct);
        var sent = (await Task.WhenAll(sends)).Select(r => Succeeded(r).Message).ToList();

        Assert.NotNull((await rejected).Rejection);
        Assert.Equal(200, sent.Select(m => m.Id).Distinct().Count());
        foreach (var conversation in conversations)
        {
            var stored = await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, 0, 100), Ct);
            Assert.Equal(Enumerable.Range(2, 25).Select(n => (long)n), stored.Select(m => m.Seq));
            Assert.DoesNotContain(stored, m => m.Content == "refused");
            Assert.Equal(stored.Select(m => m.Seq), (await ReadEventsAsync(conversation)).Skip(1).Select(e => e.Seq));
        }

        // What a send returns is what a read returns.
        foreach (var message in sent)
        {
            Assert.Equal(message, await Store.GetMessageAsync(message.Id, Ct));
        }
    }

    [Fact]
    public async Task AppendMessage_ConcurrentSendsOfEveryKind_EachGetsTheOutcomeItWouldGetAlone()
    {
        // Sends that queue together share a transaction, and where the database is a round trip away the first send of
        // each conversation in a batch reads and writes together with the others: replays of a key, replies, rejected
        // and plain sends must still each get their own outcome, and the counters must add up.
        var conversations = new List<Guid>();
        var firsts = new List<Message>();
        for (var i = 0; i < 10; i++)
        {
            var conversation = await CreateGroupAsync("alice", "bob", "carol");
            conversations.Add(conversation);
            firsts.Add(Succeeded(await Store.AppendMessageAsync(NewText(conversation, "alice", "first", $"k-first-{i}"), Accept, Ct)).Message);
        }

        // A replay of an edited message also reads its first version.
        Succeeded(await Store.EditMessageAsync(firsts[0].Id, "alice", "first, edited", null, Accept, Now, Ct));
        var refused = ApiError.Forbidden("rule says no");
        var originalsSeen = new System.Collections.Concurrent.ConcurrentBag<string?>();
        List<(int Conversation, Task<StoreResult<SendResult, ApiError>> Send)> plain = [], replies = [], replays = [], rejected = [];
        for (var round = 0; round < 3; round++)
        {
            for (var i = 0; i < conversations.Count; i++)
            {
                var (conversation, first) = (conversations[i], firsts[i]);
                plain.Add((i, Store.AppendMessageAsync(NewText(conversation, "bob", $"plain {round}", $"k-bob-{round}"), Accept, Ct)));
                replies.Add((i, Store.AppendMessageAsync<ApiError>(NewText(conversation, "carol", $"reply {round}") with { ReplyToId = first.Id },
                    facts => facts.ReplyTarget?.Id == first.Id ? null : ApiError.Forbidden("no target"), Ct)));
                replays.Add((i, Store.AppendMessageAsync<ApiError>(NewText(conversation, "alice", "first", $"k-first-{i}"), facts =>
                {
                    originalsSeen.Add(facts.ExistingOriginal?.Content);
                    return null;
                }, Ct)));
                rejected.Add((i, Store.AppendMessageAsync(NewText(conversation, "carol", "refused"), _ => refused, Ct)));
            }
        }

        await Task.WhenAll(plain.Concat(replies).Concat(replays).Concat(rejected).Select(s => s.Send));

        Assert.All(plain, s => Assert.True(Succeeded(s.Send.Result).Created));
        Assert.All(replies, s => Assert.Equal(firsts[s.Conversation].Id, Succeeded(s.Send.Result).Message.ReplyToId));
        Assert.All(replays, s => Assert.Equal((false, firsts[s.Conversation].Id), (Succeeded(s.Send.Result).Created, Succeeded(s.Send.Result).Message.Id)));
        Assert.All(rejected, s => Assert.Same(refused, s.Send.Result.Rejection));
        Assert.Equal(3, originalsSeen.Count(content => content == "first"));
        for (var i = 0; i < conversations.Count; i++)
        {
            var stored = await Store.ListMessagesAsync(new MessageQuery(conversations[i], 0, null, 0, 100), Ct);
            Assert.Equal(7, stored.Count);
            Assert.DoesNotContain(stored, m => m.Content == "refused");
            Assert.Equal(stored.Select(m => m.Seq), (await ReadEventsAsync(conversations[i])).Where(e => e.MessageId is not null && e.Type == EventTypes.MessageCreated).Select(e => e.Seq));
            var snapshot = (await Store.GetConversationAsync(conversations[i], Ct))!;
            foreach (var member in snapshot.Members)
            {
                // Each member has read up to their own last message, and has the others' later messages unread.
                var own = stored.Where(m => m.SenderId == member.UserId).Max(m => (long?)m.Seq) ?? 0;
                Assert.Equal((own, stored.Count(m => m.Seq > own && m.SenderId != member.UserId)), (member.ReadSeq, member.UnreadCount));
            }
        }
    }

    [Fact]
    public async Task AppendMessage_ConcurrentSendsWithEveryFieldInManyConversations_StoreWhatEachSendReturned()
    {
        // Concurrent sends to many conversations share batches; where the database is a round trip away, the first
        // send of each conversation in a batch reads and writes together with the others. Each field must land in its
        // own column of its own row, each conversation must point at its own last message, and no counter may move for
        // a conversation its send did not reach.
        var conversations = new List<Guid>();
        for (var i = 0; i < 12; i++)
        {
            conversations.Add(await CreateGroupAsync("alice", "bob", "carol"));
        }

        var targets = new List<Message>();
        foreach (var conversation in conversations)
        {
            targets.Add(await AppendAsync(conversation, "carol", "target"));
        }

        NewMessage Rich(int round, int i) =>
            new(Guid.CreateVersion7(), conversations[i], round % 2 == 0 ? "alice" : "bob", false, (i % 3) switch { 0 => "image", 1 => "location", _ => "text" },
                $"round {round} in {i}", i % 2 == 0 ? targets[i].Id : null,
                i % 3 == 2 ? [new Mention("carol", 0, 5), new Mention(round % 2 == 0 ? "bob" : "alice", 6, i + 1)] : null,
                i % 3 == 0 ? new Media($"https://cdn.example/{round}/{i}.png", "image/png", 1000 + i, 640, 480 + i, null, $"f{i}.png", null) : null,
                i % 3 == 1 ? new Location(48.1 + i, 11.5 - round, i % 2 == 0 ? $"place {i}" : null) : null,
                $"k-{round}-{i}", Now.AddMilliseconds(round * 100 + i));

        var sends = new List<(NewMessage Sent, Task<StoreResult<SendResult, ApiError>> Result)>();
        for (var round = 0; round < 3; round++)
        {
            for (var i = 0; i < conversations.Count; i++)
            {
                var message = Rich(round, i);
                sends.Add((message, Store.AppendMessageAsync(message, Accept, Ct)));
            }
        }

        await Task.WhenAll(sends.Select(s => s.Result));
        foreach (var (sent, result) in sends)
        {
            var returned = Succeeded(await result).Message;
            var stored = (await Store.GetMessageAsync(sent.Id, Ct))!;
            foreach (var message in new[] { returned, stored })
            {
                Assert.Equal(
                    (sent.Id, sent.ConversationId, sent.SenderId, sent.MessageType, sent.Content, sent.ReplyToId, sent.Media, sent.Location, sent.ClientMessageId, sent.Now),
                    (message.Id, message.ConversationId, message.SenderId, message.MessageType, message.Content, message.ReplyToId, message.Media, message.Location, message.ClientMessageId, message.CreatedAt));
                Assert.Equal(sent.Mentions ?? [], message.Mentions ?? []);
            }

            Assert.Equal(returned.Seq, stored.Seq);
        }

        for (var i = 0; i < conversations.Count; i++)
        {
            var stored = await Store.ListMessagesAsync(new MessageQuery(conversations[i], 0, null, 0, 100), Ct);
            Assert.Equal(Enumerable.Range(2, 4).Select(n => (long)n), stored.Select(m => m.Seq));
            Assert.All(stored.Skip(1), m => Assert.Equal(conversations[i], m.ConversationId));
            Assert.Equal(
                stored.Select(m => (m.Seq, (Guid?)m.Id, EventTypes.MessageCreated, m.SenderId, m.CreatedAt)),
                (await ReadEventsAsync(conversations[i])).Skip(1).Select(e => (e.Seq, e.MessageId, e.Type, e.ActorId, e.CreatedAt)));
            var snapshot = (await Store.GetConversationAsync(conversations[i], Ct))!;
            Assert.Equal((5L, (Guid?)stored[^1].Id), (snapshot.Conversation.LastSeq, snapshot.Conversation.LastMessageId));
            Assert.Equal(stored[^1].CreatedAt, snapshot.Conversation.LastActivityAt);
            foreach (var member in snapshot.Members)
            {
                var own = stored.Where(m => m.SenderId == member.UserId).Max(m => (long?)m.Seq) ?? 0;
                Assert.Equal((own, stored.Count(m => m.Seq > own && m.SenderId != member.UserId)), (member.ReadSeq, member.UnreadCount));
                Assert.Equal(own, member.DeliveredSeq);
            }
        }
    }

    [Fact]
    public async Task ListMessages_PagesBySeqInBothDirectionsAndHidesWhatCameBeforeJoining()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var sent = new List<Message>();
        for (var i = 0; i < 5; i++)
        {
            sent.Add(await AppendAsync(conversation, "alice", $"m{i}")); // seqs 2..6
        }

        Assert.Equal([6L, 5L], (await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 2), Ct)).Select(m => m.Seq));
        Assert.Equal([4L, 3L], (await Store.ListMessagesAsync(new MessageQuery(conversation, 0, 5, null, 2), Ct)).Select(m => m.Seq));
        Assert.Equal([3L, 4L], (await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, 2, 2), Ct)).Select(m => m.Seq));
        Assert.Equal([5L, 6L], (await Store.ListMessagesAsync(new MessageQuery(conversation, 4, null, null, 10), Ct)).Select(m => m.Seq).Order());
        Assert.Equal([5L, 6L], (await Store.ListMessagesAsync(new MessageQuery(conversation, 4, null, 0, 10), Ct)).Select(m => m.Seq));
        Assert.Empty(await Store.ListMessagesAsync(new MessageQuery(conversation, 4, 5, null, 10), Ct));
    }

    [Fact]
    public async Task GetConversationAsOf_ReplaysTheCreationRosterAndTheMembershipChangesUpToTheSeq()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        await ChangeAsync(conversation, "alice", new MembershipChange.Add("carol", "member")); // 2
        await ChangeAsync(conversation, "alice", new MembershipChange.SetRole("bob", "admin")); // 3
        await ChangeAsync(conversation, "alice", new MembershipChange.Remove("carol")); // 4

        async Task<IEnumerable<(string, string)>> RosterAsync(long seq)
        {
            var then = await Store.GetConversationAsOfAsync(conversation, seq, Ct);
            Assert.Equal(seq, then!.Conversation.LastSeq);
            return then.Participants.Select(p => (p.UserId, p.Role));
        }

        Assert.Equal([("alice", "owner"), ("bob", "member")], await RosterAsync(1));
        Assert.Equal([("alice", "owner"), ("bob", "member"), ("carol", "member")], await RosterAsync(2));
        Assert.Equal([("alice", "owner"), ("bob", "admin"), ("carol", "member")], await RosterAsync(3));
        Assert.Equal([("alice", "owner"), ("bob", "admin")], await RosterAsync(4));
        Assert.Null(await Store.GetConversationAsOfAsync(conversation, 5, Ct));
        Assert.Null(await Store.GetConversationAsOfAsync(Guid.CreateVersion7(), 1, Ct));
    }

    [Fact]
    public async Task GetMessagesAsOf_ChangedLater_TheContentOfThatSeqOrNullWhenDeletedSince()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var edited = await AppendAsync(conversation, "alice", "v1"); // 2
        Succeeded(await Store.EditMessageAsync(edited.Id, "alice", "v2", null, Accept, Now.AddSeconds(1), Ct)); // 3
        Succeeded(await Store.EditMessageAsync(edited.Id, "alice", "v3", null, Accept, Now.AddSeconds(2), Ct)); // 4
        var deleted = await AppendAsync(conversation, "alice", "gone later"); // 5
        Succeeded(await Store.DeleteMessageAsync(deleted.Id, "alice", Accept, Now.AddSeconds(3), Ct)); // 6
        Guid[] ids = [edited.Id, deleted.Id];

        var at2 = await Store.GetMessagesAsOfAsync(conversation, 2, ids, Ct);
        var at3 = await Store.GetMessagesAsOfAsync(conversation, 3, ids, Ct);
        var at5 = await Store.GetMessagesAsOfAsync(conversation, 5, ids, Ct);
        var at6 = await Store.GetMessagesAsOfAsync(conversation, 6, ids, Ct);

        Assert.Equal(("v1", (DateTimeOffset?)null), (at2[edited.Id]!.Content, at2[edited.Id]!.EditedAt));
        Assert.Equal(("v2", (DateTimeOffset?)Now.AddSeconds(1)), (at3[edited.Id]!.Content, at3[edited.Id]!.EditedAt));
        Assert.Equal(("v3", (DateTimeOffset?)Now.AddSeconds(2)), (at5[edited.Id]!.Content, at5[edited.Id]!.EditedAt));
        Assert.Null(at5[deleted.Id]);
        Assert.NotNull(at6[deleted.Id]!.DeletedAt);
        Assert.Null(at6[deleted.Id]!.Content);
    }

    [Fact]
    public async Task StreamPosition_NamesTheEventAtTheLastPositionAndANewEpochKeepsThePositions()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "positioned");
        if (!PositionsAtCommit)
        {
            Assert.Null((await Store.GetStreamPositionAsync(Ct)).Last);
        }

        await PositionEverythingAsync();

        var position = await Store.GetStreamPositionAsync(Ct);
        var epoch = await Store.StartNewEpochAsync(Ct);
        var after = await Store.GetStreamPositionAsync(Ct);

        Assert.Equal(2, position.Pos);
        Assert.Equal(new EventKey(conversation, message.Seq, message.CreatedAt), position.Last);
        Assert.Equal(position.Last, await Store.GetEventAtPositionAsync(2, Ct));
        Assert.Equal(new EventKey(conversation, 1, Now), await Store.GetEventAtPositionAsync(1, Ct));
        Assert.Null(await Store.GetEventAtPositionAsync(3, Ct));
        Assert.NotEqual(position.Epoch, epoch);
        Assert.Equal(new StreamPosition(epoch, position.Pos, position.Last), after);
    }

    [Fact]
    public async Task ReceiptLog_ReadableOnlyAfterItsMessageEvent_InCommitOrder_WithTheFactsTheRecordsNeed()
    {
        ((Storage.Sql.SqlChatStore)Store).KeepReceiptLog = true;
        var conversation = await CreateGroupAsync("alice", "bob", "carol");
        await PositionEverythingAsync();
        var created = await Store.ReadOutboxAsync(0, 0, 100, Ct);
        var first = await AppendAsync(conversation, "alice", "one");
        var second = await AppendAsync(conversation, "bob", "two");
        Succeeded(await Store.AdvanceReadAsync(conversation, "carol", first.Id, Now, Ct));

        if (!PositionsAtCommit)
        {
            // A sequencer pass that leaves the second message unpositioned must not make carol's receipt readable yet.
            Assert.Equal(1, await Store.AssignPositionsAsync(1, Ct));
            var early = await Store.ReadOutboxAsync(created.UptoPos, 0, 100, Ct);
            Assert.Equal([first.Seq], early.Changes.Select(e => e.Event.Seq));
            Assert.Empty(early.WatermarkMoves);
        }

        await PositionEverythingAsync();
        Succeeded(await Store.AdvanceReadAsync(conversation, "carol", second.Id, Now, Ct));
        await PositionEverythingAsync();
        var batch = await Store.ReadOutboxAsync(created.UptoPos, 0, 100, Ct);

        Assert.Equal([first.Seq, second.Seq], batch.Changes.Select(e => e.Event.Seq));
        // A read moves the delivered watermark too: both, for each message, in the order they committed.
        Assert.Equal([first.Seq, first.Seq, second.Seq, second.Seq], batch.WatermarkMoves.Select(r => r.Seq));
        Assert.All(batch.WatermarkMoves, r => Assert.Equal("carol", r.UserId));
        Assert.Equal(batch.WatermarkMoves.Select(r => r.Pos).Order(), batch.WatermarkMoves.Select(r => r.Pos));
        Assert.Equal(batch.WatermarkMoves[^1].Pos, batch.UptoReceiptPos);
        // Notification candidates: members who joined before, but the sender and those who have the message already
        // (carol read both; bob, by replying, has everything up to his reply); alice has not had bob's reply delivered.
        Assert.False(batch.Recipients.ContainsKey((conversation, first.Seq)));
        Assert.Equal(["alice"], batch.Recipients[(conversation, second.Seq)]);
        Assert.Equal(["one", "two"], batch.Changes.Select(e => batch.Messages[e.Event.MessageId!.Value].Content));
        Assert.Equal("team", Assert.Single(created.Conversations).Value.Name);
        Assert.True((await Store.ReadOutboxAsync(batch.UptoPos, batch.UptoReceiptPos, 100, Ct)).IsEmpty);
    }

    [Fact]
    public async Task ReceiptLog_ADeliveredBatchOfThreeMoves_LogsExactlyThoseThree()
    {
        // Three rows: PostgreSQL's statements are padded to four with a row of NULLs, which must log nothing.
        ((Storage.Sql.SqlChatStore)Store).KeepReceiptLog = true;
        var conversation = await CreateGroupAsync("alice", "bob", "carol", "dave");
        var message = await AppendAsync(conversation, "alice", "one");
        await PositionEverythingAsync();
        var before = await Store.ReadOutboxAsync(0, 0, 1000, Ct);

        var batch = await Store.AdvanceDeliveredAsync(
            [new DeliveryReport(conversation, "bob", message.Seq), new DeliveryReport(conversation, "carol", message.Seq),
             new DeliveryReport(conversation, "dave", message.Seq)], Now, Ct);
        await PositionEverythingAsync();
        var logged = await Store.ReadOutboxAsync(before.UptoPos, before.UptoReceiptPos, 100, Ct);

        Assert.Equal(["bob", "carol", "dave"], batch.Moved.Select(m => m.After.UserId).Order(StringComparer.Ordinal));
        Assert.Equal(["bob", "carol", "dave"], logged.WatermarkMoves.Select(r => r.UserId).Order(StringComparer.Ordinal));
        Assert.All(logged.WatermarkMoves, r => Assert.Equal((ReceiptKinds.Delivered, message.Seq, message.Id), (r.Kind, r.Seq, r.MessageId)));
    }

    [Fact]
    public async Task PruneReceiptLog_ASinkInstancesOfAnotherConfigurationHold_KeepsItsRowsUntilNoneHeldItForTheGivenTime()
    {
        ((Storage.Sql.SqlChatStore)Store).KeepReceiptLog = true;
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "one");
        Succeeded(await Store.AdvanceReadAsync(conversation, "bob", message.Id, Now, Ct));
        await PositionEverythingAsync();
        var batch = await Store.ReadOutboxAsync(0, 0, 100, Ct);
        Assert.NotEmpty(batch.WatermarkMoves);

        // This instance runs "kafka", which published everything; instances of a newer configuration (a rolling deploy)
        // run "crm" too, which published nothing yet.
        Assert.NotNull(await Store.TakeRelayLeaseAsync("kafka", "here", Now, TimeSpan.FromSeconds(30), Ct));
        Assert.True(await Store.RecordRelayPositionAsync("kafka", "here", batch.UptoPos, batch.UptoReceiptPos, Now, Ct));
        Assert.NotNull(await Store.TakeRelayLeaseAsync("crm", "there", Now, TimeSpan.FromSeconds(30), Ct));

        Assert.Equal(0, await Store.PruneReceiptLogAsync(["kafka"], Now - TimeSpan.FromHours(1), 100, Ct));
        Assert.Equal(0, await Store.PruneReceiptLogAsync(["kafka", "webhook:new"], Now + TimeSpan.FromHours(1), 100, Ct));
        Assert.Equal(batch.WatermarkMoves.Count, (await Store.ReadOutboxAsync(0, 0, 100, Ct)).WatermarkMoves.Count);

        // No instance has held "crm" since: it was removed from the configuration and keeps nothing any more.
        Assert.Equal(batch.WatermarkMoves.Count, await Store.PruneReceiptLogAsync(["kafka"], Now + TimeSpan.FromSeconds(1), 100, Ct));
        Assert.Empty((await Store.ReadOutboxAsync(0, 0, 100, Ct)).WatermarkMoves);
    }

    [Fact]
    public async Task RelayLease_HeldUntilItRunsOut_AndAnInstanceThatLostItCannotMoveThePosition()
    {
        var lease = TimeSpan.FromSeconds(30);
        var first = await Store.TakeRelayLeaseAsync("kafka", "a", Now, lease, Ct);
        Assert.Equal((0L, 0L), (first!.Pos, first.ReceiptPos));
        Assert.True(await Store.RecordRelayPositionAsync("kafka", "a", 5, 2, Now, Ct));

        // Not before it runs out, however often asked; its holder renews it.
        Assert.Null(await Store.TakeRelayLeaseAsync("kafka", "b", Now + lease - TimeSpan.FromSeconds(1), lease, Ct));
        Assert.NotNull(await Store.TakeRelayLeaseAsync("kafka", "a", Now + TimeSpan.FromSeconds(10), lease, Ct));
        Assert.Null(await Store.TakeRelayLeaseAsync("kafka", "b", Now + lease + TimeSpan.FromSeconds(1), lease, Ct));

        // Run out: another instance takes it where the first left off, and the first, late, moves nothing.
        var taken = await Store.TakeRelayLeaseAsync("kafka", "b", Now + TimeSpan.FromSeconds(41), lease, Ct);
        Assert.Equal((5L, 2L), (taken!.Pos, taken.ReceiptPos));
        Assert.False(await Store.RecordRelayPositionAsync("kafka", "a", 9, 4, Now + TimeSpan.FromSeconds(42), Ct));
        Assert.Null(await Store.TakeRelayLeaseAsync("kafka", "a", Now + TimeSpan.FromSeconds(42), lease, Ct));
        await Store.ReleaseRelayLeaseAsync("kafka", "a", Ct); // not its to release
        var again = await Store.TakeRelayLeaseAsync("kafka", "b", Now + TimeSpan.FromSeconds(43), lease, Ct);
        Assert.Equal((5L, 2L), (again!.Pos, again.ReceiptPos));
        Assert.Null(await Store.TakeRelayLeaseAsync("kafka", "a", Now + TimeSpan.FromSeconds(43), lease, Ct));

        // Released by its holder: free at once.
        await Store.ReleaseRelayLeaseAsync("kafka", "b", Ct);
        Assert.NotNull(await Store.TakeRelayLeaseAsync("kafka", "a", Now + TimeSpan.FromSeconds(44), lease, Ct));
    }

    [Fact]
    public async Task AddDeadLetter_TheSameRecordOfASinkTwice_KeepsOne()
    {
        var letter = new DeadLetter("webhook:crm", "0193a0b4-0000-8000-8000-000000000001", "message.created", "{}", "HTTP 400", Now);

        await Store.AddDeadLetterAsync(letter, Ct);
        await Store.AddDeadLetterAsync(letter with { Error = "HTTP 500" }, Ct);
        await Store.AddDeadLetterAsync(letter with { Sink = "webhook:other" }, Ct);

        Assert.Equal("HTTP 400", Assert.Single(await Store.ListDeadLettersAsync("webhook:crm", Ct)).Error);
        Assert.Single(await Store.ListDeadLettersAsync("webhook:other", Ct));
    }

    private protected static NewConversation Direct(string a, string b) =>
        new(Guid.CreateVersion7(), "direct", null, a, [(a, "member"), (b, "member")], string.Join('\n', new[] { a, b }.Order(StringComparer.Ordinal)), Now);

    private protected async Task<Guid> CreateGroupAsync(string owner, params string[] members)
    {
        var id = Guid.CreateVersion7();
        var created = await Store.CreateConversationAsync(
            new NewConversation(id, "group", "team", owner, [(owner, "owner"), .. members.Select(m => (m, "member"))], null, Now), Ct);
        Assert.True(created.Created);
        return id;
    }

    private protected static NewMessage NewText(Guid conversation, string sender, string content, string? clientMessageId = null) =>
        new(Guid.CreateVersion7(), conversation, sender, false, "text", content, null, null, null, null, clientMessageId, Now);

    private protected async Task<Message> AppendAsync(Guid conversation, string sender, string content)
    {
        var result = Succeeded(await Store.AppendMessageAsync(NewText(conversation, sender, content), Accept, Ct));
        Assert.True(result.Created);
        return result.Message;
    }

    private protected async Task<MembershipResult> ChangeAsync(Guid conversation, string actor, params MembershipChange[] changes) =>
        Succeeded(await Store.ChangeMembershipAsync<ApiError>(conversation, actor, _ => changes, Now, Ct));

    /// <summary>Rules that accept everything.</summary>
    private protected static ApiError? Accept(SendFacts _) => null;

    private protected static ApiError? Accept(MessageFacts _) => null;

    private protected static T Succeeded<T>(StoreResult<T, ApiError> result)
    {
        Assert.True(result.IsApplied, $"The store refused ({result.Refusal}) or the rules rejected ({result.Rejection}).");
        return result.Value!;
    }

    private protected static T Succeeded<T>(StoreResult<T> result)
    {
        Assert.True(result.IsApplied, $"The store refused: {result.Refusal}");
        return result.Value!;
    }

    /// <summary>Runs the sequencer until every committed event has its stream position.</summary>
    private protected async Task PositionEverythingAsync()
    {
        while (await Store.AssignPositionsAsync(1000, Ct) > 0)
        {
        }
    }

    /// <summary>Nothing after <paramref name="lastSeq"/>: no event, no message, and the counter where it was.</summary>
    private async Task AssertUntouchedAsync(Guid conversation, long lastSeq)
    {
        Assert.Equal(lastSeq, (await Store.GetConversationAsync(conversation, Ct))!.Conversation.LastSeq);
        Assert.Equal(Enumerable.Range(1, (int)lastSeq).Select(i => (long)i), (await ReadEventsAsync(conversation)).Select(e => e.Seq));
        Assert.DoesNotContain(await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 1000), Ct), m => m.Seq > lastSeq);
    }

    private async Task<(int Alice, int Bob, int Carol)> UnreadAsync(Guid conversation)
    {
        var members = (await Store.GetConversationAsync(conversation, Ct))!.Members.ToDictionary(m => m.UserId, m => m.UnreadCount);
        return (members["alice"], members["bob"], members["carol"]);
    }
}

using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Resuming with a cursor (docs/delivery.md): every event missed while away, in seq order per conversation,
/// then sync_complete, then live, with nothing lost or doubled between catch-up and live.
/// </summary>
public sealed class ResumeTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(s => s["Delivery:CursorInterval"] = "00:00:00.200");

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Resume_AfterAShortAbsence_SendsEveryMissedEventInOrderThenSyncCompleteThenLive()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateGroupAsync("trip", "bob", "carol");
        string cursor;
        await using (var bob = await WsClient.ConnectAsync(_factory, "bob", "acks=true"))
        {
            cursor = bob.Connected.GetProperty("cursor").GetString()!;
        }

        // While Bob is away: messages, an edit, a delete, a membership change.
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await alice.PutAsync($"/api/v1/messages/{first.Id}", new { content = "one, edited" });
        await alice.DeleteAsync($"/api/v1/messages/{second.Id}");
        await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/participants", new { user_ids = new[] { "dave" } });

        await using var resumed = await WsClient.ConnectAsync(_factory, "bob", $"acks=true&cursor={cursor}");
        var complete = await resumed.NextAsync("sync_complete");
        var live = await alice.SendTextAsync(conversation.Id, "three");
        await resumed.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == live.Id);

        var frames = resumed.All().Skip(1).ToList();
        var types = frames.Select(f => f.GetProperty("type").GetString()).ToList();
        var syncAt = types.IndexOf("sync_complete");
        // The creation may come again (the fresh socket's cursor was taken before the sequencer positioned it): at least once.
        var caughtUp = frames.Take(syncAt).Where(IsSequenced).Where(f => Seq(f) > 1).Select(f => (Type: f.GetProperty("type").GetString(), Seq: Seq(f))).ToList();
        Assert.Equal(
            [("new_message", first.Seq), ("new_message", second.Seq), ("message_edited", second.Seq + 1), ("message_deleted", second.Seq + 2), ("participant_added", second.Seq + 3)],
            caughtUp);
        // The replayed new_message carries the message as it is now: edited, or a tombstone.
        Assert.Equal("one, edited", frames[types.IndexOf("new_message")].GetProperty("payload").GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(JsonValueKind.Null, frames[types.LastIndexOf("new_message", syncAt)].GetProperty("payload").GetProperty("message").GetProperty("content").ValueKind);
        Assert.True(types.IndexOf("new_message", syncAt) > syncAt, "the live message came after sync_complete");
        // A fresh cursor (it moved on, unless nothing was positioned yet when the catch-up read the stream).
        Assert.True(Sync.Cursor.TryDecode(cursor, out var before));
        Assert.True(Sync.Cursor.TryDecode(complete.GetProperty("cursor").GetString(), out var after));
        Assert.True(after!.Pos >= before!.Pos);
    }

    [Fact]
    public async Task Resume_FromTheCursorOfSyncComplete_DeliversNothingTwice()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var cursor = await CurrentCursorAsync("bob");
        await alice.SendTextAsync(conversation.Id, "one");
        await WaitUntilPositionedAsync("bob", cursor, 1);
        string next;
        await using (var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}"))
        {
            next = (await bob.NextAsync("sync_complete")).GetProperty("cursor").GetString()!;
            Assert.Single(bob.All(), f => f.GetProperty("type").GetString() == "new_message");
        }

        await using var again = await WsClient.ConnectAsync(_factory, "bob", $"cursor={next}");
        await again.NextAsync("sync_complete");

        Assert.DoesNotContain(again.All(), f => f.GetProperty("type").GetString() == "new_message");
    }

    [Fact]
    public async Task Resume_WhileMessagesKeepArriving_EveryPositionExactlyOnceInOrder()
    {
        using var alice = _factory.Api("alice");
        using var carol = _factory.Api("carol");
        var conversation = await alice.CreateGroupAsync("busy", "bob", "carol");
        var cursor = await CurrentCursorAsync("bob");
        for (var i = 0; i < 30; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"before {i}");
        }

        // Senders keep going while Bob resumes: some events come through catch-up, some live, some both.
        using var stop = new CancellationTokenSource();
        var sent = new List<long>();
        var senders = new[] { alice, carol }.Select(api => Task.Run(async () =>
        {
            var mine = new List<long>();
            for (var i = 0; i < 25 && !stop.IsCancellationRequested; i++)
            {
                mine.Add((await api.SendTextAsync(conversation.Id, $"during {i}")).Seq);
            }

            return mine;
        }, CancellationToken.None)).ToList();
        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}");
        foreach (var result in await Task.WhenAll(senders))
        {
            sent.AddRange(result);
        }

        var last = await alice.SendTextAsync(conversation.Id, "last");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("seq").GetInt64() == last.Seq);

        var seqs = bob.All().Where(f => f.GetProperty("type").GetString() == "new_message").Select(Seq).ToList();
        var expected = Enumerable.Range(2, (int)last.Seq - 1).Select(s => (long)s).ToList();
        Assert.Equal(expected, seqs);
    }

    [Fact]
    public async Task Resume_ConversationJoinedWhileAway_StartsWithTheJoiningAndHidesEditsOfOlderHistory()
    {
        using var alice = _factory.Api("alice");
        var group = await alice.CreateGroupAsync("old group", "bob");
        var old = await alice.SendTextAsync(group.Id, "before carol");
        var cursor = await CurrentCursorAsync("carol");

        await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "carol" } });
        await alice.PutAsync($"/api/v1/messages/{old.Id}", new { content = "edited before carol's eyes" });
        var visible = await alice.SendTextAsync(group.Id, "for carol too");

        await using var carol = await WsClient.ConnectAsync(_factory, "carol", $"cursor={cursor}");
        await carol.NextAsync("sync_complete");

        var frames = carol.All().Where(IsSequenced).Where(f => Conversation(f) == group.Id).ToList();
        Assert.Equal(["participant_added", "hidden_event", "new_message"], frames.Select(f => f.GetProperty("type").GetString()));
        Assert.Equal([old.Seq + 1, old.Seq + 2, visible.Seq], frames.Select(Seq));
        Assert.DoesNotContain("before carol", string.Join(" ", frames.Select(f => f.GetRawText())), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Resume_RemovedWhileAway_GetsEventsUpToItsRemovalAndNothingAfter()
    {
        using var alice = _factory.Api("alice");
        var group = await alice.CreateGroupAsync("kicked", "bob");
        var cursor = await CurrentCursorAsync("bob");
        var before = await alice.SendTextAsync(group.Id, "you will see this");
        await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/bob");
        await alice.SendTextAsync(group.Id, "but not this");

        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}");
        await bob.NextAsync("sync_complete");

        var frames = bob.All().Where(IsSequenced).Where(f => Conversation(f) == group.Id && Seq(f) > 1).ToList();
        Assert.Equal(["new_message", "participant_removed"], frames.Select(f => f.GetProperty("type").GetString()));
        Assert.Equal([before.Seq, before.Seq + 1], frames.Select(Seq));
    }

    [Fact]
    public async Task Resume_RemovedWhileAway_SeesTheConversationAndMessagesAsTheyWereWhenRemoved()
    {
        // Audit reproduction: a former member's catch-up showed the current roster and last_seq, the content of a
        // message edited after the removal, and a tombstone for one deleted after it.
        using var alice = _factory.Api("alice");
        using var bobApi = _factory.Api("bob");
        var cursor = await CurrentCursorAsync("bob");
        var group = await alice.CreateGroupAsync("before and after", "bob", "carol");
        var edited = await alice.SendTextAsync(group.Id, "as bob saw it");
        var deleted = await alice.SendTextAsync(group.Id, "bob saw this too");
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/bob")).StatusCode);
        var removedAt = deleted.Seq + 1;

        // After the removal: none of this is bob's to learn.
        await alice.PutAsync($"/api/v1/messages/{edited.Id}", new { content = "edited after bob left" });
        await alice.DeleteAsync($"/api/v1/messages/{deleted.Id}");
        await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "dave" } });
        await alice.PatchAsync($"/api/v1/conversations/{group.Id}/participants/carol", new { role = "admin" });
        await alice.SendTextAsync(group.Id, "after bob left");

        // REST sync returns positioned events only: read until the removal is there.
        List<JsonElement> rest;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            Assert.True(DateTime.UtcNow < deadline, "the removal was not positioned in time");
            rest = (await ParleyApi.ReadAsync<JsonElement>(await bobApi.GetAsync($"/api/v1/sync?cursor={cursor}&limit=1000")))
                .GetProperty("events").EnumerateArray().Where(IsSequenced).Where(f => Conversation(f) == group.Id).ToList();
        }
        while (!rest.Any(f => f.GetProperty("type").GetString() == "participant_removed"));

        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}");
        await bob.NextAsync("sync_complete");
        var socket = bob.All().Where(IsSequenced).Where(f => Conversation(f) == group.Id).ToList();

        foreach (var frames in new[] { socket, rest })
        {
            Assert.Equal(
                ["conversation_created", "new_message", "hidden_event", "participant_removed"],
                frames.Select(f => f.GetProperty("type").GetString()));
            Assert.Equal([1L, edited.Seq, deleted.Seq, removedAt], frames.Select(Seq));
            var conversation = frames[0].GetProperty("payload").GetProperty("conversation");
            Assert.Equal(removedAt, conversation.GetProperty("last_seq").GetInt64());
            Assert.Equal(
                [("alice", "owner"), ("carol", "member")],
                conversation.GetProperty("participants").EnumerateArray().Select(p => (p.GetProperty("user_id").GetString(), p.GetProperty("role").GetString())));
            var message = frames[1].GetProperty("payload").GetProperty("message");
            Assert.Equal("as bob saw it", message.GetProperty("content").GetString());
            Assert.Equal(JsonValueKind.Null, message.GetProperty("edited_at").ValueKind);
            var text = string.Join(" ", frames.Select(f => f.GetRawText()));
            Assert.DoesNotContain("edited after bob left", text, StringComparison.Ordinal);
            Assert.DoesNotContain("dave", text, StringComparison.Ordinal);
            Assert.DoesNotContain("deleted_at\":\"", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Resume_RemovedWhileAway_AnEditBeforeTheRemovalIsReplayedWithTheContentOfThatTime()
    {
        using var alice = _factory.Api("alice");
        var group = await alice.CreateGroupAsync("edits", "bob");
        var cursor = await CurrentCursorAsync("bob");
        var message = await alice.SendTextAsync(group.Id, "first");
        await alice.PutAsync($"/api/v1/messages/{message.Id}", new { content = "second" });
        await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/bob");
        await alice.PutAsync($"/api/v1/messages/{message.Id}", new { content = "third, after bob left" });
        await WaitUntilPositionedAsync("bob", cursor, 1);

        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}");
        await bob.NextAsync("sync_complete");

        var frames = bob.All().Where(IsSequenced).Where(f => Conversation(f) == group.Id && Seq(f) > 1).ToList();
        Assert.Equal(["new_message", "message_edited", "participant_removed"], frames.Select(f => f.GetProperty("type").GetString()));
        Assert.All(frames.Take(2), f => Assert.Equal("second", f.GetProperty("payload").GetProperty("message").GetProperty("content").GetString()));
        Assert.All(frames.Take(2), f => Assert.Equal(JsonValueKind.String, f.GetProperty("payload").GetProperty("message").GetProperty("edited_at").ValueKind));
    }

    [Fact]
    public async Task Resume_ReadReceiptsWhileAway_AreSentAsCurrentWatermarks()
    {
        using var alice = _factory.Api("alice");
        using var bob = _factory.Api("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var message = await alice.SendTextAsync(conversation.Id, "read me");
        var cursor = await CurrentCursorAsync("alice");
        await bob.MarkReadAsync(message.Id);

        await using var aliceLaptop = await WsClient.ConnectAsync(_factory, "alice", $"cursor={cursor}");
        await aliceLaptop.NextAsync("sync_complete");

        var read = aliceLaptop.All().Single(f => f.GetProperty("type").GetString() == "message_read" && f.GetProperty("payload").GetProperty("user_id").GetString() == "bob");
        Assert.Equal(message.Id, read.GetProperty("payload").GetProperty("message_id").GetGuid());
        Assert.Equal(message.Seq, read.GetProperty("payload").GetProperty("up_to_seq").GetInt64());
    }

    [Fact]
    public async Task ResumeFrame_AsTheFirstFrame_CatchesUpBeforeAnyLiveEvent()
    {
        // A wait far longer than a slow machine's pause between connecting and the resume frame.
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:30");
        factory.StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var cursor = await CurrentCursorAsync(factory, "bob");
        var missed = await alice.SendTextAsync(conversation.Id, "missed");

        await using var bob = await WsClient.ConnectAsync(factory, "bob");
        var meanwhile = await alice.SendTextAsync(conversation.Id, "sent before the resume frame");
        await bob.SendAsync("resume", new { cursor });
        await bob.NextAsync("sync_complete");
        var live = await alice.SendTextAsync(conversation.Id, "after the catch-up");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == live.Id);

        // Nothing reached the socket before the catch-up: the held live copy of "meanwhile" was dropped as a duplicate.
        var order = bob.All().Skip(1)
            .Where(f => f.GetProperty("type").GetString() is "new_message" or "sync_complete")
            .Select(f => f.GetProperty("type").GetString() == "new_message" ? Seq(f) : 0L).ToList();
        Assert.Equal([missed.Seq, meanwhile.Seq, 0L, live.Seq], order);
    }

    [Fact]
    public async Task BinaryFirstFrame_EndsTheFirstFrameWait_LiveEventsFlowAndALaterResumeIsRefused()
    {
        // Longer than the test waits for a frame: live events arrive only because the binary frame ended the wait.
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:30");
        factory.StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var cursor = await CurrentCursorAsync(factory, "bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");

        await bob.Socket.SendAsync(new byte[] { 1, 2, 3 }, WebSocketMessageType.Binary, true, TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        await bob.NextErrorAsync("invalid_frame");
        var live = await alice.SendTextAsync(conversation.Id, "live");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == live.Id);

        // It was the first frame: a resume after it is refused, and no cursor is issued on this socket.
        await bob.SendAsync("{\"type\":\"resume\",\"id\":\"late\",\"payload\":{\"cursor\":\"" + cursor + "\"}}");
        await bob.NextErrorAsync("invalid_frame", id: "late");
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = live.Seq });
        await bob.AssertNoFrameAsync("cursor", TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task ResumeFrame_RightAfterASlowConnect_StillComesInsideTheFirstFrameWait()
    {
        // The connect's own reads take longer than the whole wait: it must count from when `connected` can go out.
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:02", services: FailingStore.Install);
        factory.StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var cursor = await CurrentCursorAsync(factory, "bob");
        var missed = await alice.SendTextAsync(conversation.Id, "missed");
        store.Method = nameof(IChatStore.GetLastSeqsAsync); // the baseline a device that acknowledges reads at connect
        store.Delay = TimeSpan.FromSeconds(3);
        store.Failing = true;

        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        store.Failing = false;
        await bob.SendAsync("resume", new { cursor });

        await bob.NextAsync("sync_complete");
        Assert.Contains(bob.All(), f => f.GetProperty("type").GetString() == "new_message" && Seq(f) == missed.Seq);
        Assert.DoesNotContain(bob.All(), f => f.GetProperty("type").GetString() == "error");
    }

    [Fact]
    public async Task ResumeFrame_AfterTheFirstFrameWait_IsRefusedAndNoCursorEverCoversWhatTheDeviceLacks()
    {
        // Audit reproduction: Bob takes C0, Alice sends m1-m3, Bob connects (acks=true, no cursor) and his resume{C0}
        // arrives late; meanwhile live messages flowed and a cursor frame covered m1-m3: resuming from it lost them.
        await using var factory = new ParleyFactory(s =>
        {
            s["Delivery:FirstFrameWait"] = "00:00:00.300";
            s["Delivery:CursorInterval"] = "00:00:00.200";
        }).StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var c0 = await CurrentCursorAsync(factory, "bob");
        var missed = new List<long>();
        for (var i = 1; i <= 3; i++)
        {
            missed.Add((await alice.SendTextAsync(conversation.Id, $"m{i}")).Seq);
        }

        await WaitUntilPositionedAsync(factory, "bob", c0, 3);
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        var live = await alice.SendTextAsync(conversation.Id, "m4, live");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == live.Id);

        // Several cursor intervals pass with a sequenced event written: still no cursor before the first frame.
        await bob.AssertNoFrameAsync("cursor", TimeSpan.FromSeconds(1));
        await bob.SendAsync("{\"type\":\"resume\",\"id\":\"late\",\"payload\":{\"cursor\":\"" + c0 + "\"}}");
        await bob.NextErrorAsync("resume_too_late", id: "late");
        await bob.PingAsync();

        // The socket stays live-only: events arrive, acks count, but no cursor is ever issued on it.
        var after = await alice.SendTextAsync(conversation.Id, "m5, live");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == after.Id);
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = after.Seq });
        await bob.AssertNoFrameAsync("cursor", TimeSpan.FromSeconds(1));
        Assert.DoesNotContain(bob.All(), f => f.GetProperty("type").GetString() is "cursor" or "sync_complete");
        Assert.Equal([live.Seq, after.Seq], bob.All().Where(f => f.GetProperty("type").GetString() == "new_message").Select(Seq));

        // C0 still leads to everything: the hole can be filled.
        await using var again = await WsClient.ConnectAsync(factory, "bob", $"cursor={c0}");
        await again.NextAsync("sync_complete");
        Assert.Equal([.. missed, live.Seq, after.Seq], again.All().Where(f => f.GetProperty("type").GetString() == "new_message").Select(Seq));
    }

    [Fact]
    public async Task Connect_WithoutCursor_CursorFramesStartOnlyAfterAFirstFrameThatIsNotAResume()
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["Delivery:FirstFrameWait"] = "00:00:00.200";
            s["Delivery:CursorInterval"] = "00:00:00.200";
        }).StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        var message = await alice.SendTextAsync(conversation.Id, "live");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == message.Id);
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 1);
        await bob.AssertNoFrameAsync("cursor", TimeSpan.FromSeconds(1));

        await bob.PingAsync();

        // From now on the device's state is what it loaded over REST plus this socket: cursors follow.
        using var api = factory.Api("bob");
        var cursor = (await bob.NextAsync("cursor")).GetProperty("cursor").GetString()!;
        var sync = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={cursor}"));
        Assert.DoesNotContain(sync.GetProperty("events").EnumerateArray(), f => f.GetProperty("type").GetString() == "new_message");
    }

    [Fact]
    public async Task ResumeFrame_InvalidCursorAsTheFirstFrame_ErrorLiveEventsFlowAndNoCursors()
    {
        await using var factory = new ParleyFactory(s =>
        {
            // Far longer than a slow machine's pause between connecting and the first frame (at 5 s, a loaded CI
            // run once saw the frame arrive after the wait and answered resume_too_late).
            s["Delivery:FirstFrameWait"] = "00:00:30";
            s["Delivery:CursorInterval"] = "00:00:00.200";
        }).StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");

        await bob.SendAsync("resume", new { cursor = "not-a-cursor" });
        await bob.NextErrorAsync("invalid_cursor");
        var message = await alice.SendTextAsync(conversation.Id, "live");

        // Released at once (not after the 30 s wait), and never covered by a cursor the device did not resume from.
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == message.Id, TimeSpan.FromSeconds(10));
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = message.Seq });
        await bob.AssertNoFrameAsync("cursor", TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task Connect_WithoutCursorOrFirstFrame_LiveEventsFlowAfterTheFirstFrameWait()
    {
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:00.300");
        factory.StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var seedClient = await WsClient.ConnectAsync(factory, "bob");

        var message = await alice.SendTextAsync(conversation.Id, "for a client that never sends frames");

        var started = DateTime.UtcNow;
        await seedClient.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == message.Id);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Connect_WithoutCursorOrFirstFrame_TheFirstFrameWaitRunsOnTheServersClock()
    {
        // Reproduction: the wait's timer ran on the system clock whatever TimeProvider the server was given, so on a
        // fake clock live events were released by real time (here: not within the test's bounds) instead of by it.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:30", time);
        factory.StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob");
        var message = await alice.SendTextAsync(conversation.Id, "held until the first frame or the wait");
        await bob.AssertNoFrameAsync("new_message", WsClientAssertions.Silence);

        time.Advance(TimeSpan.FromSeconds(30));

        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == message.Id);
    }

    [Fact]
    public async Task ResumeFrame_NotFirst_IsRefusedAndTheConnectionStaysOpen()
    {
        await using var bob = await WsClient.ConnectAsync(_factory, "bob");
        await bob.SendAsync("ping", new { });
        await bob.NextAsync("pong");

        await bob.SendAsync("{\"type\":\"resume\",\"id\":\"r1\",\"payload\":{\"cursor\":\"" + await CurrentCursorAsync("bob") + "\"}}");

        var error = await bob.NextAsync("error");
        Assert.Equal("invalid_frame", error.GetProperty("code").GetString());
        Assert.Equal("r1", error.GetProperty("id").GetString());
        await bob.SendAsync("ping", new { });
        await bob.NextAsync("pong");
    }

    [Fact]
    public async Task Connect_MalformedCursor_Returns400WithoutUpgrade()
    {
        await Handshake.AssertRefusedAsync(
            _factory.WebSocketUri("cursor=not-a-cursor"),
            HttpStatusCode.BadRequest,
            o => o.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("bob")));
    }

    [Fact]
    public async Task Resume_CursorOlderThanTheRetention_GetsSyncResetWithAFreshCursorAndLiveEvents()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        Assert.True(Sync.Cursor.TryDecode(await CurrentCursorAsync("bob"), out var current));
        var old = (current! with { IssuedAt = DateTimeOffset.UtcNow.AddDays(-31) }).Encode();

        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={old}");
        var reset = await bob.NextAsync("sync_reset");
        var live = await alice.SendTextAsync(conversation.Id, "after the reset");

        Assert.False(string.IsNullOrEmpty(reset.GetProperty("reason").GetString()));
        Assert.NotEqual(old, reset.GetProperty("cursor").GetString());
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == live.Id);
        Assert.DoesNotContain(bob.All(), f => f.GetProperty("type").GetString() == "sync_complete");
        using var api = _factory.Api("bob");
        await ParleyApi.ProblemAsync(await api.GetAsync($"/api/v1/sync?cursor={old}"), HttpStatusCode.Gone, "cursor_expired");
    }

    [Fact]
    public async Task ResumeFrame_MalformedPayload_ErrorInvalidFrameAndTheSocketStaysOpen()
    {
        await using var bob = await WsClient.ConnectAsync(_factory, "bob", "acks=true");

        await bob.SendAsync("""{"type":"resume","id":"r1","payload":{"cursor":5}}""");

        await bob.NextErrorAsync("invalid_frame", id: "r1");
        await bob.PingAsync();
    }

    [Fact]
    public async Task Resume_CatchUpOfSeveralPages_ACursorAfterEachPageLeadsOnFromThere()
    {
        await using var factory = new ParleyFactory(s => s["Delivery:CatchUpPage"] = "10").StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        string cursor;
        await using (var away = await WsClient.ConnectAsync(factory, "bob", "acks=true"))
        {
            cursor = away.Connected.GetProperty("cursor").GetString()!;
        }

        var sent = new List<long>();
        for (var i = 0; i < 25; i++)
        {
            sent.Add((await alice.SendTextAsync(conversation.Id, $"m{i}")).Seq);
        }

        await WaitUntilPositionedAsync(factory, "bob", cursor, sent.Count);
        await using var bob = await WsClient.ConnectAsync(factory, "bob", $"acks=true&cursor={cursor}");
        await bob.NextAsync("sync_complete");

        // Pages of 10, 10 and 5: a cursor after each full page, before sync_complete.
        var frames = bob.All().TakeWhile(f => f.GetProperty("type").GetString() != "sync_complete").ToList();
        var interim = frames.Select((f, i) => (f, i)).Where(x => x.f.GetProperty("type").GetString() == "cursor").ToList();
        Assert.Equal(2, interim.Count);
        // (The conversation's creation may be in the catch-up too, when it was positioned after the cursor was issued.)
        var firstPage = frames.Take(interim[0].i).ToList();
        Assert.Equal(10, firstPage.Count(f => f.GetProperty("type").GetString() is "new_message" or "conversation_created"));
        var inFirstPage = firstPage.Where(f => f.GetProperty("type").GetString() == "new_message")
            .Select(f => f.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64()).ToList();
        using var api = factory.Api("bob");
        var rest = await ParleyApi.ReadAsync<JsonElement>(
            await api.GetAsync($"/api/v1/sync?cursor={interim[0].f.GetProperty("payload").GetProperty("cursor").GetString()}&limit=100"));
        Assert.Equal(
            sent.Except(inFirstPage),
            rest.GetProperty("events").EnumerateArray().Where(e => e.GetProperty("type").GetString() == "new_message")
                .Select(e => e.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64()));
    }

    [Fact]
    public async Task Resume_ManyEventsNotPositionedYet_AreReadInPagesAndDeliveredOnceInOrder()
    {
        // On PostgreSQL the sequencer positions events on the server's clock, which stands still here: everything sent
        // while away is committed but not positioned, so the catch-up finds it all in its read of newer events. A
        // sequencer that stalled for long leaves many such events; they are read a page at a time, not all at once.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(s => s["Delivery:CatchUpPage"] = "10", time, services: FailingStore.Install);
        factory.StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        string cursor;
        await using (var away = await WsClient.ConnectAsync(factory, "bob", "acks=true"))
        {
            cursor = away.Connected.GetProperty("cursor").GetString()!;
        }

        var sent = new List<long>();
        for (var i = 0; i < 25; i++)
        {
            sent.Add((await alice.SendTextAsync(conversation.Id, $"m{i}")).Seq);
        }

        await using var bob = await WsClient.ConnectAsync(factory, "bob", $"acks=true&cursor={cursor}");
        await bob.NextAsync("sync_complete");

        var received = bob.All().TakeWhile(f => f.GetProperty("type").GetString() != "sync_complete")
            .Where(f => f.GetProperty("type").GetString() == "new_message")
            .Select(f => f.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64());
        Assert.Equal(sent, received);
        if (TestPostgres.Selected)
        {
            // 25 events in pages of 10: 10, 10, 5.
            Assert.Equal(3, store.Calls(nameof(IChatStore.ReadUserEventsNewerAsync)));
        }
    }

    [Fact]
    public async Task Resume_AMessageReadElsewhereDuringTheCatchUp_ItsReceiptComesAfterTheMessage()
    {
        // The catch-up is slowed at its read of the watermarks; meanwhile alice sends and bob's phone reads it. The
        // resuming laptop must get the message before any receipt naming it (a receipt first made apps count a read
        // message as unread).
        await using var factory = new ParleyFactory(services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        using var bob = factory.Api("bob");
        var direct = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(direct.Id, "before");
        var cursor = (await ParleyApi.ReadAsync<JsonElement>(await bob.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
        store.Method = nameof(IChatStore.ListMovedWatermarksAsync);
        store.Delay = TimeSpan.FromSeconds(2);
        store.Failing = true;

        await using var laptop = await WsClient.ConnectAsync(factory, "bob", $"cursor={Uri.EscapeDataString(cursor)}", "laptop");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.Failures == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the catch-up did not reach the watermarks");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        var sent = await alice.SendTextAsync(direct.Id, "during the catch-up");
        await bob.MarkReadAsync(sent.Id);

        await laptop.NextAsync("sync_complete");
        await laptop.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == sent.Id);
        var frames = laptop.All().ToList();
        var messageAt = frames.FindIndex(f => f.GetProperty("type").GetString() == "new_message"
                                              && f.GetProperty("payload").GetProperty("message").GetProperty("id").GetGuid() == sent.Id);
        var receiptsBefore = frames.Take(messageAt).Count(f => f.GetProperty("type").GetString() is "message_read" or "message_delivered"
                                                              && f.GetProperty("payload").GetProperty("up_to_seq").GetInt64() >= sent.Seq);
        Assert.Equal(0, receiptsBefore);
    }

    [Fact]
    public async Task RestSync_AReadOfAMessageNotPositionedYet_ComesOnlyWithOrAfterTheMessage()
    {
        // On PostgreSQL the sequencer positions events on the server's clock, which stands still here: alice's message is
        // committed but not positioned, and bob has read it. A sync call must not return that receipt before the
        // message; it comes in a later call, with the message. (On SQLite events are positioned at commit: both at once.)
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(configure: null, time);
        factory.StartKestrel();
        using var alice = factory.Api("alice");
        using var bob = factory.Api("bob");
        var direct = await alice.CreateDirectAsync("bob");
        var cursor = (await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
        var sent = await alice.SendTextAsync(direct.Id, "read at once");
        await bob.MarkReadAsync(sent.Id);

        var seen = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!seen.Contains("message_read"))
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(cursor)}&limit=100"));
            foreach (var e in page.GetProperty("events").EnumerateArray())
            {
                var type = e.GetProperty("type").GetString()!;
                if (type == "new_message" && e.GetProperty("payload").GetProperty("message").GetProperty("id").GetGuid() == sent.Id)
                {
                    seen.Add(type);
                }
                else if (type == "message_read" && e.GetProperty("payload").GetProperty("user_id").GetString() == "bob"
                         && e.GetProperty("payload").GetProperty("up_to_seq").GetInt64() == sent.Seq)
                {
                    seen.Add(type);
                }
            }

            cursor = page.GetProperty("next_cursor").GetString()!;
            Assert.True(DateTime.UtcNow < deadline, $"no receipt in time; seen {string.Join(", ", seen)}");
            time.Advance(TimeSpan.FromMilliseconds(20));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Equal(["new_message", "message_read"], seen);
    }

    /// <summary>Waits until REST sync from the cursor returns <paramref name="count"/> messages (the sequencer positions them shortly after commit).</summary>
    /// <summary>
    /// Waits until <paramref name="count"/> messages lie past <paramref name="cursor"/> for <paramref name="userId"/>. With
    /// the server's fake clock (<paramref name="time"/>), which PostgreSQL's sequencer positions events on, the clock moves
    /// on by 20 ms between looks.
    /// </summary>
    private static async Task WaitUntilPositionedAsync(
        ParleyFactory factory, string userId, string cursor, int count, Microsoft.Extensions.Time.Testing.FakeTimeProvider? time = null)
    {
        using var api = factory.Api(userId);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={cursor}&limit=1000"));
            if (page.GetProperty("events").EnumerateArray().Count(e => e.GetProperty("type").GetString() == "new_message") >= count)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, "events were not positioned in time");
            time?.Advance(TimeSpan.FromMilliseconds(20));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Resume_CursorOfAnotherDeployment_IsExpired()
    {
        Assert.True(Sync.Cursor.TryDecode(await CurrentCursorAsync("bob"), out var current));
        var foreign = (current! with { Epoch = Guid.NewGuid() }).Encode();

        await using var bob = await WsClient.ConnectAsync(_factory, "bob", $"cursor={foreign}");
        await bob.NextAsync("sync_reset");
        using var api = _factory.Api("bob");
        await ParleyApi.ProblemAsync(await api.GetAsync($"/api/v1/sync?cursor={foreign}"), HttpStatusCode.Gone, "cursor_expired");
    }

    [Fact]
    public async Task Cursor_WhileEventsFlow_ArrivesPeriodicallyAndCoversWhatWasReceived()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_factory, "bob", "acks=true");
        // Any first frame but a resume tells the server the device is not resuming: cursors may follow.
        await bob.PingAsync();
        var message = await alice.SendTextAsync(conversation.Id, "hello");
        await bob.NextAsync("new_message");
        // Until the message has its stream position, a sync from any cursor leaves it out, covered or not.
        await WaitUntilPositionedAsync("bob", bob.Connected.GetProperty("cursor").GetString()!, 1);

        var cursor = await CursorCoveringAsync(bob, message.Seq);

        // Resuming from it replays nothing already received.
        await using var laptop = await WsClient.ConnectAsync(_factory, "bob", $"cursor={cursor}");
        await laptop.NextAsync("sync_complete");
        Assert.DoesNotContain(laptop.All(), f => f.GetProperty("type").GetString() == "new_message" && Seq(f) == message.Seq);
    }

    [Fact]
    public async Task Ack_RepliedWithACursorCoveringTheAcknowledgedEvents()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_factory, "bob", "acks=true");
        var message = await alice.SendTextAsync(conversation.Id, "ack me");
        await bob.NextAsync("new_message");
        await WaitUntilPositionedAsync("bob", bob.Connected.GetProperty("cursor").GetString()!, 1);

        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = message.Seq });

        await CursorCoveringAsync(bob, message.Seq);
    }

    [Fact]
    public async Task Ack_RepliedWithACursorAtOnceTheFirstTime_ThenAtMostOncePerCursorInterval()
    {
        // A reply within a second of every ack cost a busy server a cursor check and a frame per acknowledging socket a
        // second (docs/benchmarks.md, item 35), for a resume point a few seconds fresher.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(time: time).StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        await bob.NextAsync("new_message");
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 1, time);
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = first.Seq });
        await bob.NextAsync("cursor");

        var second = await alice.SendTextAsync(conversation.Id, "two");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == second.Id);
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 2, time);
        time.Advance(TimeSpan.FromSeconds(2));
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = second.Seq });
        await bob.AssertNoFrameAsync("cursor", WsClientAssertions.Silence);

        // Delivery:CursorInterval (5 s) after the first reply: the ticker's turn (it offers a cursor over "two")...
        time.Advance(TimeSpan.FromSeconds(3));
        await CursorCoveringAsync(factory, bob, second.Seq);

        // ...and the next ack's, at once (the ticker's next turn is 5 s away).
        var third = await alice.SendTextAsync(conversation.Id, "three");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == third.Id);
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 3, time);
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = third.Seq });
        await CursorCoveringAsync(factory, bob, third.Seq);
    }

    [Fact]
    public async Task Ack_WithNothingNewToCover_DoesNotPutOffTheNextAcksCursor()
    {
        // An ack that needs no check (nothing written since the last cursor) started the pace all the same: the next ack,
        // after new messages, then got no cursor until the ticker's turn.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(time: time).StartKestrel();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        await bob.NextAsync("new_message");
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 1, time);
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = first.Seq });
        await CursorCoveringAsync(factory, bob, first.Seq);

        time.Advance(TimeSpan.FromSeconds(6));
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = first.Seq }); // nothing new since the cursor
        await bob.AssertNoFrameAsync("cursor", WsClientAssertions.Silence);

        var second = await alice.SendTextAsync(conversation.Id, "two");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == second.Id);
        await WaitUntilPositionedAsync(factory, "bob", bob.Connected.GetProperty("cursor").GetString()!, 2, time);
        await bob.SendAsync("ack", new { conversation_id = conversation.Id, seq = second.Seq });
        await CursorCoveringAsync(factory, bob, second.Seq);
    }

    [Fact]
    public async Task Resume_CatchUpFailingUnexpectedly_ClosesWith1013InsteadOfHoldingLiveEventsForGood()
    {
        await using var factory = new ParleyFactory(services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        string cursor;
        await using (var away = await WsClient.ConnectAsync(factory, "bob", "acks=true"))
        {
            cursor = away.Connected.GetProperty("cursor").GetString()!;
        }

        await alice.SendTextAsync(conversation.Id, "while away");
        store.Method = nameof(IChatStore.ReadUserEventsAsync);
        store.Error = () => new InvalidOperationException("not a storage error");
        store.Failing = true;

        // The device is told to resume again (and does so from its cursor): nothing it was owed is claimed. The close
        // may overtake the queued `connected` frame, so the socket is read raw.
        using var bob = new ClientWebSocket();
        bob.Options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("bob", null));
        var ct = TestContext.Current.CancellationToken;
        await bob.ConnectAsync(factory.WebSocketUri($"acks=true&cursor={Uri.EscapeDataString(cursor)}"), ct).WaitAsync(WsClient.DefaultTimeout, ct);
        var buffer = new byte[64 * 1024];
        while ((await bob.ReceiveAsync(new ArraySegment<byte>(buffer), ct).WaitAsync(WsClient.DefaultTimeout, ct)).MessageType != WebSocketMessageType.Close)
        {
            // `connected`, and nothing sequenced: the catch-up failed before it sent anything
        }

        Assert.Equal((WebSocketCloseStatus)CloseCodes.TryAgainLater, bob.CloseStatus);
        Assert.True(store.Failures >= 1);
    }

    [Fact]
    public async Task ResumeFrame_ValidationFailingUnexpectedly_ClosesWith1013InsteadOfHoldingLiveEventsForGood()
    {
        // The resume claimed the socket's held live events; a failure other than a storage error used to leave them held,
        // on an open socket that then received nothing.
        await using var factory = new ParleyFactory(s => s["Delivery:FirstFrameWait"] = "00:00:30", services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        var cursor = await CurrentCursorAsync(factory, "bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob");
        store.Method = nameof(IChatStore.GetStreamPositionAsync);
        store.Error = () => new InvalidOperationException("not a storage error");
        store.Failing = true;

        await bob.SendAsync("resume", new { cursor });

        Assert.Equal(CloseCodes.TryAgainLater, (int?)await bob.ClosedAsync());
    }

    [Fact]
    public async Task CursorCheck_FailingUnexpectedly_IsTriedAgainOnTheNextTick_AndTheServerKeepsServing()
    {
        await using var factory = new ParleyFactory(s => s["Delivery:CursorInterval"] = "00:00:00.100", services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(factory, "bob", "acks=true");
        await bob.PingAsync();

        // A failure the cursor check does not expect (a bug, say), on every check while the message waits for its cursor.
        store.Error = () => new InvalidOperationException("not a storage error");
        store.Failing = true;
        var message = await alice.SendTextAsync(conversation.Id, "hello");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == message.Id);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.Failures < 3)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the cursor check ran {store.Failures} times in 10 s");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        store.Failing = false;

        // The next tick gives the socket its cursor; the instance still serves REST and live delivery.
        var cursor = (await bob.NextAsync("cursor")).GetProperty("cursor").GetString()!;
        using var bobRest = factory.Api("bob");
        var sync = await ParleyApi.ReadAsync<JsonElement>(await bobRest.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(cursor)}"));
        Assert.DoesNotContain(sync.GetProperty("events").EnumerateArray(), f => f.GetProperty("type").GetString() == "new_message" && Seq(f) == message.Seq);
        var next = await alice.SendTextAsync(conversation.Id, "still here");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == next.Id);
    }

    /// <summary>
    /// The socket's next cursor frame that covers the message at <paramref name="seq"/>: a cursor may come before
    /// the message has its stream position (then it covers only what was positioned); a later one, without
    /// further traffic, covers it.
    /// </summary>
    private Task<string> CursorCoveringAsync(WsClient client, long seq) => CursorCoveringAsync(_factory, client, seq);

    private static async Task<string> CursorCoveringAsync(ParleyFactory factory, WsClient client, long seq)
    {
        using var api = factory.Api(client.UserId);
        while (true)
        {
            var cursor = (await client.NextAsync("cursor")).GetProperty("cursor").GetString()!;
            var sync = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={cursor}"));
            if (!sync.GetProperty("events").EnumerateArray().Any(f => f.GetProperty("type").GetString() == "new_message" && Seq(f) == seq))
            {
                return cursor;
            }
        }
    }

    private static bool IsSequenced(JsonElement frame) =>
        frame.GetProperty("type").GetString() is "conversation_created" or "new_message" or "message_edited" or "message_deleted"
            or "participant_added" or "participant_removed" or "participant_updated" or "hidden_event";

    private static long Seq(JsonElement frame)
    {
        var payload = frame.GetProperty("payload");
        return frame.GetProperty("type").GetString() == "new_message"
            ? payload.GetProperty("message").GetProperty("seq").GetInt64()
            : payload.GetProperty("seq").GetInt64();
    }

    private static Guid Conversation(JsonElement frame)
    {
        var payload = frame.GetProperty("payload");
        return payload.TryGetProperty("conversation_id", out var id) ? id.GetGuid()
            : payload.TryGetProperty("message", out var message) ? message.GetProperty("conversation_id").GetGuid()
            : payload.GetProperty("conversation").GetProperty("id").GetGuid();
    }

    private Task<string> CurrentCursorAsync(string userId) => CurrentCursorAsync(_factory, userId);

    private static async Task<string> CurrentCursorAsync(ParleyFactory factory, string userId)
    {
        using var api = factory.Api(userId);
        return (await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
    }

    /// <summary>Waits until at least <paramref name="count"/> messages of the user after the cursor have stream positions.</summary>
    private async Task WaitUntilPositionedAsync(string userId, string cursor, int count)
    {
        using var api = _factory.Api(userId);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={cursor}"));
            if (page.GetProperty("events").EnumerateArray().Count(e => e.GetProperty("type").GetString() == "new_message") >= count)
            {
                return;
            }

            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Fail("events were not positioned within 10 s");
    }
}

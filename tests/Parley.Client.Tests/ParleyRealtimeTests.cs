using System.Net;
using System.Net.WebSockets;
using Parley.Client.Realtime;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// <see cref="ParleyRealtime"/> against a scripted server: what it presents when connecting, how it orders,
/// de-duplicates and fills, what it acknowledges and persists and when, how it reconnects, and how sends are
/// retried.
/// </summary>
[Trait("Store", "Independent")]
public sealed class ParleyRealtimeTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = FakeParley.Timeout;
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");

    private readonly FakeParley _server = new();
    private readonly ParleyClient _client;
    private readonly List<ConnectionStateChange> _states = [];
    private ParleyRealtime? _realtime;
    private IAsyncEnumerator<ParleyEvent>? _events;
    private Task? _stateReader;

    public ParleyRealtimeTests()
    {
        _client = _server.CreateClient();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private ParleyRealtime Realtime => _realtime!;

    private ParleyRealtime Create(ParleyRealtimeOptions? options = null)
    {
        _realtime = new ParleyRealtime(_client, options ?? _server.Options());
        _events = _realtime.ReadEventsAsync(Ct).GetAsyncEnumerator(Ct);
        _stateReader = Task.Run(async () =>
        {
            await foreach (var change in _realtime.ReadStateChangesAsync(Ct))
            {
                lock (_states)
                {
                    _states.Add(change);
                }
            }
        }, Ct);
        return _realtime;
    }

    /// <summary>Creates the connection, accepts its socket and sends <c>connected</c>; returns once the client is live.</summary>
    private async Task<FakeSocket> ConnectLiveAsync(ParleyRealtimeOptions? options = null, string? cursor = "k0")
    {
        var connect = Create(options).ConnectAsync(Ct);
        var socket = await _server.AcceptConnectedAsync(cursor: cursor);
        await connect.WaitAsync(Timeout, Ct);
        return socket;
    }

    private async Task<ParleyEvent> NextEventAsync()
    {
        Assert.True(await _events!.MoveNextAsync().AsTask().WaitAsync(Timeout, Ct), "the event stream ended");
        return _events.Current;
    }

    private async Task<List<long>> NextSeqsAsync(int count)
    {
        var seqs = new List<long>();
        for (var i = 0; i < count; i++)
        {
            seqs.Add(Assert.IsAssignableFrom<ConversationEvent>(await NextEventAsync()).Seq);
        }

        return seqs;
    }

    private static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            await Task.Delay(10, Ct);
        }
    }

    private List<ConnectionStateChange> States()
    {
        lock (_states)
        {
            return [.. _states];
        }
    }

    private static Task SendMessageAsync(FakeSocket socket, long seq, string sender = "bob", string? clientMessageId = null) =>
        socket.SendAsync("new_message", Wire.NewMessage(C, seq, sender, clientMessageId));

    [Fact]
    public async Task ConnectAsync_NoCheckpoint_ConnectsWithTokenAcksAndDeviceButNoCursor()
    {
        var socket = await ConnectLiveAsync();

        Assert.Equal("ws://parley.test/ws", socket.Request.Uri.GetLeftPart(UriPartial.Path));
        Assert.Equal("Bearer token-1", socket.Header("Authorization"));
        Assert.Equal("true", socket.Query("acks"));
        Assert.Equal("phone", socket.Query("device_id"));
        Assert.Null(socket.Query("cursor"));
        Assert.Null(socket.Query("access_token"));
        Assert.Equal(ConnectionState.Live, Realtime.State);
        Assert.Equal("alice", Realtime.UserId);
    }

    [Fact]
    public async Task ReadEvents_CursorFrame_CheckpointSavedOnlyOnceTheEventsBeforeItAreConsumed()
    {
        // Every save is checked as it happens (not after a pause that may be too short): k2 follows seq 2, so it
        // may only be saved once the reader has asked for the event after seq 2.
        var movedPastTwo = 0;
        var early = new List<string>();
        var store = new CheckedCursorStore(checkpoint =>
        {
            if (checkpoint.Cursor == "k2" && Volatile.Read(ref movedPastTwo) == 0)
            {
                lock (early)
                {
                    early.Add($"k2 saved with positions {string.Join(",", checkpoint.Positions.Values)} while seq 2 was still handed out");
                }
            }
        });
        var socket = await ConnectLiveAsync(_server.Options(store));
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 2);
        await socket.SendAsync("cursor", Wire.Cursor("k2"));

        Assert.Equal([1L, 2L], await NextSeqsAsync(2));
        await EventuallyAsync(() => store.Checkpoint?.Cursor == "k0", "the connected cursor");
        // Asking for seq 2 consumed seq 1: its ack comes from the pass that also saves due checkpoints, by now
        // long after k2 arrived (frames are read in order, and the ack waits AckDelay).
        Assert.Equal(1, (await socket.NextAsync("ack")).GetProperty("seq").GetInt64());
        Assert.Equal("k0", store.Checkpoint?.Cursor);

        // Asking for the next event consumes seq 2, and with it the cursor after it.
        await SendMessageAsync(socket, 3);
        Interlocked.Exchange(ref movedPastTwo, 1);
        Assert.Equal([3L], await NextSeqsAsync(1));
        await EventuallyAsync(() => store.Checkpoint?.Cursor == "k2", "the cursor after seq 2");
        lock (early)
        {
            Assert.Empty(early);
        }

        Assert.Equal(2, store.Checkpoint!.Positions[C]);
    }

    [Fact]
    public async Task ConnectAsync_StoredCheckpoint_PresentsItsCursorAndIsLiveOnlyAfterSyncComplete()
    {
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("k5", new Dictionary<Guid, long> { [C] = 3 }), Ct);
        var connect = Create(_server.Options(store)).ConnectAsync(Ct);
        var socket = await _server.AcceptConnectedAsync(cursor: "k5");

        Assert.Equal("k5", socket.Query("cursor"));
        await EventuallyAsync(() => Realtime.State == ConnectionState.CatchingUp, "catching up");
        await SendMessageAsync(socket, 3);
        await SendMessageAsync(socket, 4);

        // The catch-up's events reach the app at once (seq 3 was applied before: a repeat); only sync_complete
        // makes the connection live.
        Assert.Equal([4L], await NextSeqsAsync(1));
        Assert.Equal(ConnectionState.CatchingUp, Realtime.State);
        Assert.DoesNotContain(States(), s => s.State == ConnectionState.Live);
        Assert.False(connect.IsCompleted);

        await socket.SendAsync("sync_complete", Wire.Cursor("k6"));
        await connect.WaitAsync(Timeout, Ct);

        Assert.Equal(ConnectionState.Live, Realtime.State);
    }

    [Fact]
    public async Task ReadEvents_DuplicatesFromTheWire_YieldedOnce()
    {
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 2);
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 3);

        Assert.Equal([1L, 2L, 3L], await NextSeqsAsync(3));
    }

    [Fact]
    public async Task ReadEvents_AnEventThatDoesNotRead_IsHandedOutAsUnreadableAndHoldsNothingBack()
    {
        // Held back behind it, the conversation's later events and every cursor would wait for a sync that reads the
        // same payload again: the checkpoint would never move.
        var store = new InMemoryCursorStore();
        var socket = await ConnectLiveAsync(_server.Options(store));
        await SendMessageAsync(socket, 1);
        await socket.SendRawAsync($$$"""{"type":"new_message","payload":{"message":{"conversation_id":"{{{C}}}","seq":2,"created_at":12},"timestamp":"2026-11-24T01:49:40.771Z"}}""");
        await SendMessageAsync(socket, 3);
        await socket.SendAsync("cursor", Wire.Cursor("k3"));

        Assert.Equal(1L, Assert.IsType<MessageCreatedEvent>(await NextEventAsync()).Seq);
        var unreadable = Assert.IsType<UnreadableEvent>(await NextEventAsync());
        Assert.Equal((2L, "new_message"), (unreadable.Seq, unreadable.Type));
        Assert.Equal(3L, Assert.IsType<MessageCreatedEvent>(await NextEventAsync()).Seq);
        // Asking for the next event says the app is done with seq 3: the cursor after it may then be saved.
        var next = _events!.MoveNextAsync().AsTask();
        await EventuallyAsync(() => store.Checkpoint?.Cursor == "k3", "the cursor after it");
        Assert.False(next.IsCompleted);
    }

    [Fact]
    public async Task ReadEvents_GapWhileLive_FilledOverRestSyncFromTheLatestCursor()
    {
        _server.Http = request => request.RequestUri!.AbsolutePath == "/api/v1/sync"
            ? FakeParley.Json(Wire.SyncPage("k3", hasMore: false, ("new_message", Wire.NewMessage(C, 2)), ("new_message", Wire.NewMessage(C, 3))))
            : null!;
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await socket.SendAsync("cursor", Wire.Cursor("k1"));
        await SendMessageAsync(socket, 3);

        Assert.Equal([1L, 2L, 3L], await NextSeqsAsync(3));
        Assert.Contains("/api/v1/sync?cursor=k1&limit=500", _server.HttpRequests);
    }

    [Fact]
    public async Task ReadEvents_GapFillSeesThePositionOnlyLater_RetriedUntilFilled()
    {
        var calls = 0;
        _server.Http = request => Interlocked.Increment(ref calls) < 3
            ? FakeParley.Json(Wire.SyncPage("k1", hasMore: false))
            : FakeParley.Json(Wire.SyncPage("k3", hasMore: false, ("new_message", Wire.NewMessage(C, 2))));
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await socket.SendAsync("cursor", Wire.Cursor("k1"));
        await SendMessageAsync(socket, 3);

        Assert.Equal([1L, 2L, 3L], await NextSeqsAsync(3));
        Assert.True(Volatile.Read(ref calls) >= 3);
    }

    [Fact]
    public async Task ReadEvents_GapDuringCatchUp_FilledByTheCatchUpWithoutRest()
    {
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("k5", new Dictionary<Guid, long> { [C] = 3 }), Ct);
        var logger = new RecordingLogger();
        var options = _server.Options(store);
        options.Logger = logger;
        var connect = Create(options).ConnectAsync(Ct);
        var socket = await _server.AcceptConnectedAsync(cursor: "k5");
        await SendMessageAsync(socket, 5);

        // Seq 5 after the stored position 3 is held back as a gap, and known to be one during the catch-up.
        await logger.WaitForAsync("GapDetected", e => e.Values["Seq"] is 5L && e.Values["CatchingUp"] is true, Timeout);
        await SendMessageAsync(socket, 4);

        // Seq 4 fills it and releases 5 before sync_complete: the gap path (a conversation whose start is unknown
        // would hold both until sync_complete).
        Assert.Equal([4L, 5L], await NextSeqsAsync(2));
        Assert.False(connect.IsCompleted);
        await socket.SendAsync("sync_complete", Wire.Cursor("k6"));
        await connect.WaitAsync(Timeout, Ct);
        Assert.Empty(_server.HttpRequests);
    }

    [Fact]
    public async Task ReadEvents_HiddenEvent_FillsThePositionAndIsNotYielded()
    {
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await socket.SendAsync("hidden_event", Wire.Hidden(C, 2));
        await SendMessageAsync(socket, 3);

        Assert.Equal([1L, 3L], await NextSeqsAsync(2));
        Assert.Empty(_server.HttpRequests);
    }

    [Fact]
    public async Task ReadEvents_ServerHasNoWayToFillAGap_HeldEventsAppliedInOrderAnyway()
    {
        // No cursor in connected (a server without delivery support): nothing can fill the gap.
        var socket = await ConnectLiveAsync(cursor: null);
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 3);
        await SendMessageAsync(socket, 4);

        Assert.Equal([1L, 3L, 4L], await NextSeqsAsync(3));
    }

    [Fact]
    public async Task ReadEvents_ReceiptsAndTyping_PassedThrough()
    {
        var socket = await ConnectLiveAsync();
        await socket.SendAsync("message_read", Wire.Receipt(C, "bob", 7));
        await socket.SendAsync("typing", new { ConversationId = C, UserId = "bob", IsTyping = true, Timestamp = Wire.Now });

        var read = Assert.IsType<MessageReadEvent>(await NextEventAsync());
        Assert.Equal(("bob", 7L), (read.UserId, read.UpToSeq));
        Assert.True(Assert.IsType<TypingEvent>(await NextEventAsync()).IsTyping);
    }

    [Fact]
    public async Task ReadEvents_SyncReset_YieldsTheResetAndContinuesFromTheFreshCursor()
    {
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("old", new Dictionary<Guid, long> { [C] = 3 }), Ct);
        _server.Http = request => FakeParley.Json(Wire.SyncPage("k40", hasMore: false, ("new_message", Wire.NewMessage(C, 40))));
        var connect = Create(_server.Options(store)).ConnectAsync(Ct);
        var socket = await _server.AcceptConnectedAsync(cursor: "old");
        await socket.SendAsync("sync_reset", new { Cursor = "fresh", Reason = "cursor_expired" });
        await connect.WaitAsync(Timeout, Ct);
        await SendMessageAsync(socket, 40);

        // Positions are forgotten: where the conversation starts after the fresh cursor is read from it.
        Assert.Equal("cursor_expired", Assert.IsType<SyncResetEvent>(await NextEventAsync()).Reason);
        Assert.Equal([40L], await NextSeqsAsync(1));
        Assert.Contains("/api/v1/sync?cursor=fresh&limit=500", _server.HttpRequests);
        // Saved once the loop moves past the event the cursor covers.
        var next = _events!.MoveNextAsync().AsTask();
        await EventuallyAsync(() => store.Checkpoint?.Cursor == "k40", "the cursor after the read");
        await SendMessageAsync(socket, 41);
        Assert.True(await next.WaitAsync(Timeout, Ct));
    }

    [Fact]
    public async Task ReadEvents_NewConversationsFirstLiveEventWasNotItsFirst_EarlierOnesReadFromTheCursorAndAppliedFirst()
    {
        // Seq 4 was written through another instance and never came live; the sync from the cursor has it.
        _server.Http = request => FakeParley.Json(Wire.SyncPage(
            "k5", hasMore: false, ("new_message", Wire.NewMessage(C, 4)), ("new_message", Wire.NewMessage(C, 5))));
        var socket = await ConnectLiveAsync();
        await socket.SendAsync("cursor", Wire.Cursor("k3"));
        await SendMessageAsync(socket, 5);

        Assert.Equal([4L, 5L], await NextSeqsAsync(2));
        Assert.Contains("/api/v1/sync?cursor=k3&limit=500", _server.HttpRequests);
        await SendMessageAsync(socket, 4);
        await SendMessageAsync(socket, 6);
        Assert.Equal([6L], await NextSeqsAsync(1));
    }

    [Fact]
    public async Task ReadEvents_NewConversationsStartUnknown_ACursorThatCameAfterItsFirstEventResolvesIt()
    {
        // The first sync runs before seq 5 has a position (and finds nothing); then a cursor covering 5 arrives
        // (5 was written to the socket), so no later sync can contain 5: a read from that cursor settles the start.
        _server.Http = request => request.RequestUri!.Query.Contains("cursor=k3", StringComparison.Ordinal)
            ? FakeParley.Json(Wire.SyncPage("k4", hasMore: false))
            : FakeParley.Json(Wire.SyncPage("k6", hasMore: false));
        var socket = await ConnectLiveAsync(cursor: "k3");
        await SendMessageAsync(socket, 5);
        await EventuallyAsync(() => !_server.HttpRequests.IsEmpty, "the first sync");
        await socket.SendAsync("cursor", Wire.Cursor("k5"));

        // Settled by a read from a cursor that came after seq 5 (k5, or the first read's own k4), which no read included.
        Assert.Equal([5L], await NextSeqsAsync(1));
        Assert.DoesNotContain("/api/v1/sync?cursor=k3&limit=500", _server.HttpRequests.Skip(1));
    }

    [Fact]
    public async Task ReadEvents_NewConversationsStartUnknown_ASyncInterruptedAfterItsFirstPageStillResolvesIt()
    {
        var failures = 0;
        _server.Http = request =>
            request.RequestUri!.Query.Contains("cursor=k3", StringComparison.Ordinal)
                ? FakeParley.Json(Wire.SyncPage("k5", hasMore: true, ("new_message", Wire.NewMessage(C, 5))))
                : Interlocked.Increment(ref failures) == 1
                    ? FakeParley.Problem(HttpStatusCode.ServiceUnavailable, "service_unavailable")
                    : FakeParley.Json(Wire.SyncPage("k6", hasMore: false));
        var socket = await ConnectLiveAsync(cursor: "k3");
        await SendMessageAsync(socket, 5);

        Assert.Equal([5L], await NextSeqsAsync(1));
        Assert.True(Volatile.Read(ref failures) >= 2);
    }

    [Fact]
    public async Task ReadEvents_NewConversationStartingWithItsCreation_AppliedAtOnceWithoutRest()
    {
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);

        Assert.Equal([1L], await NextSeqsAsync(1));
        Assert.Empty(_server.HttpRequests);
    }

    [Fact]
    public async Task Ack_EventsConsumed_OneCumulativeAckPerConversationAndNoneBeforeConsumption()
    {
        var options = _server.Options();
        options.AckDelay = TimeSpan.FromMilliseconds(300);
        var socket = await ConnectLiveAsync(options);
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 2);
        await SendMessageAsync(socket, 3);
        await socket.AssertNoFrameAsync("ack", TimeSpan.FromMilliseconds(200));

        Assert.Equal([1L, 2L, 3L], await NextSeqsAsync(3));
        var fourth = _events!.MoveNextAsync();

        var ack = await socket.NextAsync("ack");
        Assert.Equal(C, ack.GetProperty("conversation_id").GetGuid());
        Assert.Equal(3, ack.GetProperty("seq").GetInt64());
        await socket.AssertNoFrameAsync("ack", TimeSpan.FromMilliseconds(500));
        await SendMessageAsync(socket, 4);
        Assert.True(await fourth.AsTask().WaitAsync(Timeout, Ct));
    }

    [Fact]
    public async Task Ack_ManyConversationsConsumedAtOnce_SpreadOverSecondsToStayUnderTheFrameLimit()
    {
        var socket = await ConnectLiveAsync();
        var conversations = Enumerable.Range(0, AckPacer.MaxAcksPerWindow + 5).Select(_ => Guid.CreateVersion7()).ToList();
        foreach (var conversation in conversations)
        {
            await socket.SendAsync("new_message", Wire.NewMessage(conversation, 1));
        }

        for (var i = 0; i < conversations.Count; i++)
        {
            await NextEventAsync();
        }

        var last = _events!.MoveNextAsync();
        for (var i = 0; i < AckPacer.MaxAcksPerWindow; i++)
        {
            await socket.NextAsync("ack");
        }

        await socket.AssertNoFrameAsync("ack", TimeSpan.FromMilliseconds(500));
        var acked = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            acked.Add((await socket.NextAsync("ack")).GetProperty("conversation_id").GetGuid());
        }

        Assert.Equal(conversations.Count, socket.Frames.Count(f => f.GetProperty("type").GetString() == "ack"));
        Assert.Equal(conversations.Order(), socket.Frames.Where(f => f.GetProperty("type").GetString() == "ack")
            .Select(f => f.GetProperty("payload").GetProperty("conversation_id").GetGuid()).Order());
        await socket.SendAsync("new_message", Wire.NewMessage(C, 1));
        Assert.True(await last.AsTask().WaitAsync(Timeout, Ct));
    }

    [Fact]
    public async Task ReadEvents_AppStopsReading_SocketNotReadPastTheQueueLimitAndNothingLost()
    {
        var options = _server.Options();
        options.MaxQueuedEvents = 3;
        var logger = new RecordingLogger();
        options.Logger = logger;
        var socket = await ConnectLiveAsync(options);
        for (var seq = 1; seq <= 10; seq++)
        {
            await SendMessageAsync(socket, seq);
        }

        await socket.SendAsync("error", new { Code = "marker", Message = "behind the events" });
        await socket.CloseAsync(1001, "shutting down");

        // The queue (k0, seq 1, seq 2) is full: the client stops reading its socket, so the frames behind the
        // events (the error, the close) are not handled yet.
        await logger.AssertNotLoggedAsync("ServerError", TimeSpan.FromMilliseconds(300));
        Assert.Equal(ConnectionState.Live, Realtime.State);

        Assert.Equal(Enumerable.Range(1, 10).Select(s => (long)s), await NextSeqsAsync(10));
        await logger.WaitForAsync("ServerError", e => e.Values["Code"] is "marker", Timeout);
        var second = await _server.AcceptConnectedAsync();
        Assert.Equal("k0", second.Query("cursor"));
    }

    [Fact]
    public async Task SendAsync_AwaitedInsideTheEventLoopWhileTheQueueIsFull_Completes()
    {
        // An app that replies from its event loop: the message_ack comes behind events it has not read. If the
        // socket were not read on while a send waits, the loop would wait for the ack and the socket for the loop.
        var options = _server.Options();
        options.MaxQueuedEvents = 2;
        var socket = await ConnectLiveAsync(options);
        for (var seq = 1; seq <= 6; seq++)
        {
            await SendMessageAsync(socket, seq);
        }

        Assert.Equal([1L], await NextSeqsAsync(1));
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "reply", "c-9"), Ct);
        await socket.NextAsync("send_message");
        await socket.SendAsync("message_ack", new { ClientMessageId = "c-9", Message = Wire.Message(C, 7, "alice", "c-9", "reply") });

        Assert.Equal(7, (await send.WaitAsync(Timeout, Ct)).Seq);
        Assert.Equal([2L, 3L, 4L, 5L, 6L], await NextSeqsAsync(5));
    }

    [Fact]
    public async Task Reconnect_SocketDropped_ResumesFromTheLatestCursorAndDropsRedeliveredEvents()
    {
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await SendMessageAsync(socket, 2);
        await socket.SendAsync("cursor", Wire.Cursor("k2"));
        await SendMessageAsync(socket, 3);
        Assert.Equal([1L, 2L, 3L], await NextSeqsAsync(3));

        socket.Drop();
        var second = await _server.AcceptConnectedAsync(cursor: "k2");
        Assert.Equal("k2", second.Query("cursor"));
        await SendMessageAsync(second, 3);
        await SendMessageAsync(second, 4);
        await second.SendAsync("sync_complete", Wire.Cursor("k4"));

        Assert.Equal([4L], await NextSeqsAsync(1));
        var reconnecting = Assert.Single(States(), s => s.State == ConnectionState.Reconnecting);
        Assert.Null(reconnecting.CloseStatus);
        Assert.True(reconnecting.RetryDelay > TimeSpan.Zero);
    }

    [Fact]
    public async Task Reconnect_ServerGoingAway1001_ReconnectsAfterABackOff()
    {
        var socket = await ConnectLiveAsync();
        await socket.CloseAsync(1001, "shutting down");

        var second = await _server.AcceptConnectedAsync();
        Assert.Equal("k0", second.Query("cursor"));
        await EventuallyAsync(() => Realtime.State == ConnectionState.CatchingUp, "catching up");
        await second.SendAsync("sync_complete", Wire.Cursor("k1"));
        await EventuallyAsync(() => States().Count(s => s.State == ConnectionState.Live) == 2, "live again");
        var reconnecting = Assert.Single(States(), s => s.State == ConnectionState.Reconnecting);
        Assert.Equal(1001, reconnecting.CloseStatus);
        Assert.InRange(reconnecting.RetryDelay!.Value, TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(20));
    }

    [Fact]
    public async Task Reconnect_TokenExpired4003_ReconnectsAtOnceWithAFreshToken()
    {
        var socket = await ConnectLiveAsync();
        await socket.CloseAsync(4003, "token expired");

        var second = await _server.AcceptConnectedAsync();
        Assert.Equal("Bearer token-2", second.Header("Authorization"));
        // Without a back-off the new connection may be accepted before the state change reaches its handler.
        await EventuallyAsync(() => States().Any(s => s.State == ConnectionState.Reconnecting), "reconnecting reported");
        Assert.Equal(TimeSpan.Zero, Assert.Single(States(), s => s.State == ConnectionState.Reconnecting).RetryDelay);
    }

    [Fact]
    public async Task Reconnect_TokenExpired4003AgainRightAfterReconnecting_BacksOffInsteadOfStorming()
    {
        var socket = await ConnectLiveAsync();
        await socket.CloseAsync(4003, "token expired");

        // The fresh token is refused as expired too (a client clock behind the server's), again and again: no reconnect
        // at once after the first, and the waits grow (the jitter keeps each within half to all of its step).
        for (var i = 0; i < 5; i++)
        {
            var next = await _server.AcceptConnectedAsync();
            await next.CloseAsync(4003, "token expired");
        }

        await _server.AcceptConnectedAsync();

        await EventuallyAsync(() => States().Count(s => s.State == ConnectionState.Reconnecting) == 6, "six reconnects reported");
        var delays = States().Where(s => s.State == ConnectionState.Reconnecting).Select(s => s.RetryDelay!.Value).ToList();
        Assert.Equal(TimeSpan.Zero, delays[0]);
        Assert.All(delays.Skip(1), d => Assert.True(d > TimeSpan.Zero, $"retry delays {string.Join(", ", delays)}"));
        Assert.True(delays[5] > delays[1], $"retry delays {string.Join(", ", delays)}");
    }

    [Fact]
    public async Task Close1009_FailsTheConnectionAndEndsTheEventStreamWithTheReason()
    {
        var socket = await ConnectLiveAsync();
        await SendMessageAsync(socket, 1);
        await socket.CloseAsync(1009, "message too big");

        Assert.Equal([1L], await NextSeqsAsync(1));
        var error = await Assert.ThrowsAsync<ParleyConnectionException>(async () => await _events!.MoveNextAsync().AsTask().WaitAsync(Timeout, Ct));
        Assert.Equal(1009, error.CloseStatus);
        Assert.Equal(ConnectionState.Failed, Realtime.State);
        await _server.AssertNoConnectionAsync(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAsync<ParleyConnectionException>(() => Realtime.SendAsync(SendMessageRequest.Text(C, "hi"), Ct));
    }

    [Fact]
    public async Task ConnectAsync_UpgradeRefusedWith401_ThrowsAndDoesNotRetry()
    {
        _server.RefuseNext(new ParleyConnectionException("refused", handshakeStatus: HttpStatusCode.Unauthorized));

        var error = await Assert.ThrowsAsync<ParleyConnectionException>(() => Create().ConnectAsync(Ct).WaitAsync(Timeout, Ct));

        Assert.Equal(HttpStatusCode.Unauthorized, error.HandshakeStatus);
        await _server.AssertNoConnectionAsync(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task ConnectAsync_TokenProviderThrows_FailsTheConnectionWithItsError()
    {
        using var client = new ParleyClient(FakeParley.BaseAddress, ParleyCredentials.Bearer(_ => throw new InvalidOperationException("no session")));
        await using var realtime = new ParleyRealtime(client, _server.Options());

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => realtime.ConnectAsync(Ct).WaitAsync(Timeout, Ct));

        Assert.Equal("no session", error.Message);
        Assert.Equal(ConnectionState.Failed, realtime.State);
    }

    [Fact]
    public async Task ConnectAsync_NetworkErrorFirst_RetriesAndConnects()
    {
        _server.RefuseNext(new WebSocketException("connection refused"));
        _server.RefuseNext(new ParleyConnectionException("unavailable", handshakeStatus: HttpStatusCode.ServiceUnavailable));

        await ConnectLiveAsync();

        Assert.Equal(2, States().Count(s => s.State == ConnectionState.Reconnecting));
    }

    [Fact]
    public async Task ConnectAsync_Cancelled_StopsTheConnection_AndSendsFailInsteadOfWaitingForGood()
    {
        _server.HangNext();
        var realtime = Create();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => realtime.ConnectAsync(cancel.Token).WaitAsync(Timeout, Ct));

        await Assert.ThrowsAsync<ParleyConnectionException>(() => realtime.SendAsync(SendMessageRequest.Text(C, "hi"), Ct).WaitAsync(Timeout, Ct));
        Assert.Equal(ConnectionState.Failed, realtime.State);
    }

    [Fact]
    public async Task ConnectAsync_AnUpgradeNeverAnswered_IsAbandonedAfterTheConnectTimeoutAndTriedAgain()
    {
        _server.HangNext();
        var options = _server.Options();
        options.ConnectTimeout = TimeSpan.FromMilliseconds(200);

        await ConnectLiveAsync(options);

        Assert.Contains(States(), s => s.State == ConnectionState.Reconnecting && s.Error is OperationCanceledException);
    }

    [Fact]
    public async Task ConnectAsync_CursorRefusedWith400_ConnectsWithoutIt_AndYieldsTheResetOnlyOnceThatSocketIsConnected()
    {
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("garbage", new Dictionary<Guid, long> { [C] = 3 }), Ct);
        _server.RefuseNext(new ParleyConnectionException("refused", handshakeStatus: HttpStatusCode.BadRequest));
        var asked = 0;
        _server.Http = _ => Interlocked.Increment(ref asked) == 1 // REST says why, once
            ? FakeParley.Problem(HttpStatusCode.BadRequest, ParleyErrorCodes.InvalidCursor)
            : FakeParley.Problem(HttpStatusCode.NotFound, "not_found");
        var connect = Create(_server.Options(store)).ConnectAsync(Ct);
        var socket = await _server.AcceptAsync();
        Assert.Null(socket.Query("cursor"));

        // Upgraded, but not yet subscribed (no connected): an app reloading now could miss a message committed before
        // the server registers the socket. (Waiting shows no signal: the check is that nothing comes within a bounded time.)
        var next = _events!.MoveNextAsync().AsTask();
        await Task.Delay(200, Ct);
        Assert.False(next.IsCompleted);

        await socket.SendConnectedAsync(cursor: "k7");
        await connect.WaitAsync(Timeout, Ct);
        Assert.True(await next.WaitAsync(Timeout, Ct));
        Assert.Equal(ParleyErrorCodes.InvalidCursor, Assert.IsType<SyncResetEvent>(_events.Current).Reason);
        await SendMessageAsync(socket, 9);
        Assert.Equal([9L], await NextSeqsAsync(1));
        await EventuallyAsync(() => store.Checkpoint?.Cursor == "k7", "the new cursor");
    }

    [Theory]
    [InlineData(HttpStatusCode.OK)]
    [InlineData(HttpStatusCode.Unauthorized)]
    public async Task ConnectAsync_UpgradeRefusedWith400ButRestAcceptsTheCursor_FailsAndKeepsThePosition(HttpStatusCode rest)
    {
        // The 400 has another cause (a device id the server refuses, a proxy): the device's position is not given up. A
        // REST answer of 401 says nothing of the cursor either, and reconnecting would not help.
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("k3", new Dictionary<Guid, long> { [C] = 3 }), Ct);
        _server.RefuseNext(new ParleyConnectionException("refused", handshakeStatus: HttpStatusCode.BadRequest));
        _server.Http = request => request.RequestUri!.AbsolutePath != "/api/v1/sync" ? FakeParley.Problem(HttpStatusCode.NotFound, "not_found")
            : rest == HttpStatusCode.OK ? FakeParley.Json(Wire.SyncPage("k3", hasMore: false))
            : FakeParley.Problem(rest, "unauthenticated");

        var error = await Assert.ThrowsAsync<ParleyConnectionException>(() => Create(_server.Options(store)).ConnectAsync(Ct).WaitAsync(Timeout, Ct));

        Assert.Equal(HttpStatusCode.BadRequest, error.HandshakeStatus);
        Assert.Equal("k3", store.Checkpoint?.Cursor);
        await _server.AssertNoConnectionAsync(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task ConnectAsync_UpgradeRefusedWith400AndRestUnreachable_RetriesWithTheCursor()
    {
        _server.RefuseNext(new ParleyConnectionException("refused", handshakeStatus: HttpStatusCode.BadRequest));
        _server.Http = _ => throw new HttpRequestException("connection refused");
        var store = new InMemoryCursorStore();
        await store.SaveAsync(new DeliveryCheckpoint("k3", new Dictionary<Guid, long> { [C] = 3 }), Ct);

        var connect = Create(_server.Options(store)).ConnectAsync(Ct);
        var socket = await _server.AcceptAsync();

        Assert.Equal("k3", socket.Query("cursor"));
        await socket.SendConnectedAsync(cursor: "k3");
        await socket.SendAsync("sync_complete", new { Cursor = "k4" });
        await connect.WaitAsync(Timeout, Ct);
        Assert.DoesNotContain(States(), s => s.State == ConnectionState.Failed);
    }

    [Fact]
    public async Task SendAsync_TheSameRequestAgainAfterACancel_SendsTheKeyGeneratedTheFirstTime()
    {
        // A "retry" of a send that may have been stored: with a new key, the server would store a second copy.
        var socket = await ConnectLiveAsync();
        var request = SendMessageRequest.Text(C, "hello");
        using var cancel = new CancellationTokenSource();
        var first = Realtime.SendAsync(request, cancel.Token);
        var key = (await socket.NextAsync("send_message")).GetProperty("client_message_id").GetString()!;
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(Timeout, Ct));

        var retried = Realtime.SendAsync(request, Ct);
        Assert.Equal(key, (await socket.NextAsync("send_message")).GetProperty("client_message_id").GetString());
        var other = Realtime.SendAsync(request with { }, Ct);
        var otherKey = (await socket.NextAsync("send_message")).GetProperty("client_message_id").GetString()!;
        Assert.NotEqual(key, otherKey);

        await socket.SendAsync("message_ack", new { ClientMessageId = key, Message = Wire.Message(C, 5, "alice", key, "hello") });
        await socket.SendAsync("message_ack", new { ClientMessageId = otherKey, Message = Wire.Message(C, 6, "alice", otherKey, "hello") });
        Assert.Equal(5L, (await retried.WaitAsync(Timeout, Ct)).Seq);
        Assert.Equal(6L, (await other.WaitAsync(Timeout, Ct)).Seq);
    }

    [Fact]
    public async Task SendAsync_Acknowledged_ReturnsTheStoredMessage()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello"), Ct);

        var frame = await socket.NextAsync("send_message");
        var clientMessageId = frame.GetProperty("client_message_id").GetString()!;
        Assert.Equal(32, clientMessageId.Length);
        Assert.Equal("hello", frame.GetProperty("content").GetString());
        await socket.SendAsync("message_ack", new { ClientMessageId = clientMessageId, Message = Wire.Message(C, 5, "alice", clientMessageId, "hello") });

        var message = await send.WaitAsync(Timeout, Ct);
        Assert.Equal((5L, clientMessageId), (message.Seq, message.ClientMessageId));
    }

    [Fact]
    public async Task SendAsync_ConnectionLostBeforeTheAck_ResentWithTheSameClientMessageId()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello", "c-1"), Ct);
        await socket.NextAsync("send_message");

        socket.Drop();
        var second = await _server.AcceptConnectedAsync();
        var resent = await second.NextAsync("send_message");
        Assert.Equal("c-1", resent.GetProperty("client_message_id").GetString());
        Assert.False(send.IsCompleted);
        await second.SendAsync("message_ack", new { ClientMessageId = "c-1", Message = Wire.Message(C, 5, "alice", "c-1", "hello") });

        Assert.Equal("c-1", (await send.WaitAsync(Timeout, Ct)).ClientMessageId);
    }

    [Fact]
    public async Task SendAsync_SentWhileDisconnected_GoesOutOnceConnected()
    {
        var connect = Create().ConnectAsync(Ct);
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "early", "c-0"), Ct);
        var socket = await _server.AcceptConnectedAsync();
        await connect.WaitAsync(Timeout, Ct);

        await socket.NextAsync("send_message", p => p.GetProperty("client_message_id").GetString() == "c-0");
        await socket.SendAsync("message_ack", new { ClientMessageId = "c-0", Message = Wire.Message(C, 2, "alice", "c-0") });
        await send.WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task SendAsync_Refused_ThrowsWithTheServersCode()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello", "c-2"), Ct);
        await socket.NextAsync("send_message");
        await socket.SendAsync("error", new { Code = "idempotency_conflict", Message = "different body", Id = $"{C:N}:c-2", ClientMessageId = "c-2" });

        var error = await Assert.ThrowsAsync<ParleyApiException>(() => send.WaitAsync(Timeout, Ct));
        Assert.Equal(ParleyErrorCodes.IdempotencyConflict, error.Code);
        Assert.Null(error.StatusCode);
        await socket.AssertNoFrameAsync("send_message", TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task SendAsync_RateLimited_ResentAfterTheRetryDelay()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello", "c-3"), Ct);
        await socket.NextAsync("send_message");
        // The inbound frame limiter answers with the frame's id only.
        await socket.SendAsync("error", new { Code = "rate_limited", Message = "slow down", Id = $"{C:N}:c-3" });

        var resent = await socket.NextAsync("send_message");
        Assert.Equal("c-3", resent.GetProperty("client_message_id").GetString());
        await socket.SendAsync("message_ack", new { ClientMessageId = "c-3", Message = Wire.Message(C, 5, "alice", "c-3") });
        await send.WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task SendAsync_OwnNewMessageArrivesBeforeTheAck_Completes()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello", "c-4"), Ct);
        await socket.NextAsync("send_message");
        await SendMessageAsync(socket, 1, sender: "alice", clientMessageId: "c-4");

        Assert.Equal(1, (await send.WaitAsync(Timeout, Ct)).Seq);
    }

    [Fact]
    public async Task SendAsync_OwnNewMessageOfAnotherConversationWithTheSameKey_DoesNotCompleteIt()
    {
        // Another device of the user sent "c-17" in another conversation (a client_message_id is the sender's per
        // conversation): that is not this send's message, which must go on being resent until its own comes.
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "to C", "c-17"), Ct);
        await socket.NextAsync("send_message");
        var other = Guid.CreateVersion7();
        await socket.SendAsync("new_message", Wire.NewMessage(other, 1, "alice", "c-17"));
        await socket.SendAsync("error", new { code = "forbidden", message = "not yours", client_message_id = "c-17", id = $"{other:N}:c-17" });

        await Task.Delay(200, Ct);
        Assert.False(send.IsCompleted);
        await SendMessageAsync(socket, 5, sender: "alice", clientMessageId: "c-17");
        Assert.Equal((C, 5L), ((await send.WaitAsync(Timeout, Ct)).ConversationId, (await send).Seq));
    }

    [Fact]
    public async Task TrySendTyping_Connected_SendsTheFrame()
    {
        var socket = await ConnectLiveAsync();

        Assert.True(Realtime.TrySendTyping(C, true));
        Assert.True(Realtime.TrySendReadReceipt(C));

        Assert.True((await socket.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        Assert.Equal(C, (await socket.NextAsync("read_receipt")).GetProperty("message_id").GetGuid());
    }

    [Fact]
    public async Task DisposeAsync_Connected_ClosesNormallyAndFailsWaitingSends()
    {
        var socket = await ConnectLiveAsync();
        var send = Realtime.SendAsync(SendMessageRequest.Text(C, "hello"), Ct);
        await socket.NextAsync("send_message");

        await Realtime.DisposeAsync().AsTask().WaitAsync(Timeout, Ct);

        Assert.Equal(WebSocketCloseStatus.NormalClosure, await socket.Closed.WaitAsync(Timeout, Ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => send.WaitAsync(Timeout, Ct));
        Assert.Equal(ConnectionState.Closed, Realtime.State);
        Assert.False(await _events!.MoveNextAsync().AsTask().WaitAsync(Timeout, Ct));
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (_realtime is not null)
        {
            await _realtime.DisposeAsync().AsTask().WaitAsync(Timeout);
        }

        if (_stateReader is not null)
        {
            await _stateReader.WaitAsync(Timeout);
        }

        await _server.DisposeAsync();
        _client.Dispose();
    }

    /// <summary>An in-memory cursor store that shows each checkpoint to <paramref name="check"/> as it is saved.</summary>
    private sealed class CheckedCursorStore(Action<DeliveryCheckpoint> check) : ICursorStore
    {
        private readonly InMemoryCursorStore _inner = new();

        public DeliveryCheckpoint? Checkpoint => _inner.Checkpoint;

        public ValueTask<DeliveryCheckpoint?> LoadAsync(CancellationToken cancellationToken) => _inner.LoadAsync(cancellationToken);

        public ValueTask SaveAsync(DeliveryCheckpoint checkpoint, CancellationToken cancellationToken)
        {
            check(checkpoint);
            return _inner.SaveAsync(checkpoint, cancellationToken);
        }
    }
}

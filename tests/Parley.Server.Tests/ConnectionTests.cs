using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Parley.Server.Observability;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Sync;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// <see cref="Connection"/> on an in-memory socket: send order, the bounded queue's slow-consumer policy (4001),
/// send timeouts, close handshakes and the receive limits, without a server around it.
/// </summary>
[Trait("Store", "Independent")]
public sealed class ConnectionTests
{
    private const int QueueCapacity = 8;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task RunAsync_FramesEnqueuedBeforeAndWhileRunning_SentInEnqueueOrderConnectedFirst()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Connection.TryEnqueue(Frames.Connected(new ConnectedPayload("c1", "alice", "phone", 25_000, false, "cursor")));
        for (var i = 0; i < 5; i++)
        {
            Assert.True(run.Connection.TryEnqueue(Frame(i)));
        }

        run.Start();
        for (var i = 5; i < 40; i++)
        {
            Assert.True(run.Connection.TryEnqueue(Frame(i)));
        }

        await socket.WaitForSentAsync(41, Timeout);
        var sent = socket.Sent;
        Assert.Equal("connected", Type(sent[0]));
        Assert.Equal(Enumerable.Range(0, 40), sent.Skip(1).Select(Index));
        Assert.Equal(Enumerable.Range(0, 40), run.Reported.Skip(1).Select(Index));
    }

    [Fact]
    public async Task SendLoop_ASecondCopyOfAWrittenSeq_IsSkippedButARedeliveryBelowTheHighestIsWritten()
    {
        // A live frame broadcast after a catch-up released its held frames can repeat a seq the catch-up wrote.
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        var conversation = Guid.NewGuid();
        var other = Guid.NewGuid();
        run.Start();
        foreach (var frame in new[]
        {
            Sequenced(conversation, 1), Sequenced(conversation, 2), Sequenced(conversation, 3),
            Sequenced(conversation, 2), Sequenced(conversation, 3), // second copies
            Sequenced(other, 1), // another conversation's positions are its own
            Sequenced(conversation, 5),
            Sequenced(conversation, 4).AsRedelivery(), // the cursor check sends what never arrived live
            Sequenced(conversation, 4), // its late live copy
            Sequenced(conversation, 6),
            Frame(99), // unsequenced: once it is out, everything before it was written or skipped
        })
        {
            Assert.True(run.Connection.TryEnqueue(frame));
        }

        await socket.WaitForSentAsync(8, Timeout);
        Assert.Equal(99, Index(socket.Sent[^1]));
        Assert.Equal(
            [(conversation, 1L), (conversation, 2L), (conversation, 3L), (other, 1L), (conversation, 5L), (conversation, 4L), (conversation, 6L)],
            socket.Sent.SkipLast(1).Select(Position));
        Assert.Equal(socket.Sent, run.Reported);
    }

    [Fact]
    public async Task TryClaimHoldForResume_AfterTheFirstFrameWaitReleasedLiveEvents_IsRefused()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Delivery.Hold();
        run.Start();

        run.Delivery.EndFirstFrameWait();

        Assert.False(run.Delivery.TryClaimHoldForResume());
        Assert.True(run.Connection.TryEnqueue(Frame(0)));
        await socket.WaitForSentAsync(1, Timeout);
    }

    [Fact]
    public async Task TryClaimHoldForResume_WhileHolding_TheFirstFrameWaitEndingNoLongerReleases()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Delivery.Hold();
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));

        Assert.True(run.Delivery.TryClaimHoldForResume());
        run.Delivery.EndFirstFrameWait();
        Assert.True(run.Connection.TryEnqueue(Frame(1)));

        // Still holding: only the catch-up's release lets them go.
        Assert.True(run.Delivery.IsHolding);
        run.Delivery.Release();
        await socket.WaitForSentAsync(2, Timeout);
        Assert.Equal([0, 1], socket.Sent.Select(Index));
    }

    [Fact]
    public async Task TryEnqueue_QueueFull_ClosesWith4001AndDropsTheQueuedFrames()
    {
        using var socket = new FakeWebSocket();
        socket.BlockSends();
        await using var run = Run(socket, Options());
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));
        await socket.SendBlocked.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        // Frame 0 is being written; the queue holds the next QueueCapacity; the one after overflows.
        for (var i = 1; i <= QueueCapacity; i++)
        {
            Assert.True(run.Connection.TryEnqueue(Frame(i)), $"frame {i} should fit in the queue");
        }

        Assert.False(run.Connection.TryEnqueue(Frame(QueueCapacity + 1)));
        Assert.False(run.Connection.TryEnqueue(Frame(QueueCapacity + 2)));
        socket.ReleaseSends();

        // 4001 on the wire, the code docs/websocket.md gives clients (not merely whatever the constant holds).
        Assert.Equal(4001, (int)await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        // Only the frame that was already on the wire went out; a client that cannot keep up resyncs on reconnect.
        Assert.Equal([0], socket.Sent.Select(Index));
    }

    [Fact]
    public async Task TryEnqueue_QueueOverflowsOnSeveralWrites_CountsOneSlowConsumerCloseAndEndsWithThatReason()
    {
        using var metrics = new TestMetrics();
        using var slowConsumers = metrics.Collect<long>("parley.connections.slow_consumer_closes");
        using var socket = new FakeWebSocket();
        socket.BlockSends();
        await using var run = Run(socket, Options(), metrics: metrics.Metrics);
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));
        await socket.SendBlocked.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        // Every enqueue after the queue filled up finds it full; only the first decides the close.
        var overflowed = Enumerable.Range(1, QueueCapacity * 3).Count(i => !run.Connection.TryEnqueue(Frame(i)));
        socket.ReleaseSends();
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        Assert.True(overflowed > 1, $"{overflowed} enqueues overflowed");
        Assert.Equal(1, slowConsumers.GetMeasurementSnapshot().EvaluateAsCounter());
        Assert.Equal(ParleyMetrics.CloseReasons.SlowConsumer, run.Connection.CloseReason);
    }

    [Fact]
    public async Task SendLoop_WritesFrames_CountsEachByTypeAndMeasuresOnlyHandedOffFramesFromTheirHandOff()
    {
        using var metrics = new TestMetrics();
        using var framesOut = metrics.Collect<long>("parley.frames.out");
        using var latency = metrics.Collect<double>("parley.send_to_socket.duration");
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64), metrics: metrics.Metrics);
        var live = new OutboundFrame(Encoding.UTF8.GetBytes("""{"type":"new_message","payload":{"index":0}}"""), FrameTypes.NewMessage)
            .HandedOff(metrics.Time.GetTimestamp());
        Assert.True(run.Connection.TryEnqueue(live));
        Assert.True(run.Connection.TryEnqueue(Frames.Pong(DateTimeOffset.UnixEpoch)));

        // The frames wait in the queue for 7 ms of the clock before the send loop starts.
        metrics.Time.Advance(TimeSpan.FromMilliseconds(7));
        run.Start();
        await socket.WaitForSentAsync(2, Timeout);
        await WaitUntilAsync(() => framesOut.GetMeasurementSnapshot().Count == 2);

        var counted = framesOut.GetMeasurementSnapshot();
        Assert.Equal(1, counted.Where(m => m.MatchesTags(new KeyValuePair<string, object?>("type", "new_message"))).EvaluateAsCounter());
        Assert.Equal(1, counted.Where(m => m.MatchesTags(new KeyValuePair<string, object?>("type", "pong"))).EvaluateAsCounter());
        var measured = Assert.Single(latency.GetMeasurementSnapshot());
        Assert.Equal(0.007, measured.Value, precision: 6);
    }

    [Fact]
    public async Task CloseReason_PeerClosesOrSocketDrops_NormalOrAborted()
    {
        using var closing = new FakeWebSocket();
        await using var closed = Run(closing, Options());
        closed.Start();
        closing.ReceiveClose(WebSocketCloseStatus.NormalClosure);
        await closed.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        using var dropping = new FakeWebSocket();
        await using var dropped = Run(dropping, Options());
        dropped.Start();
        dropping.Abort();
        await dropped.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        Assert.Equal(ParleyMetrics.CloseReasons.Normal, closed.Connection.CloseReason);
        Assert.Equal(ParleyMetrics.CloseReasons.Aborted, dropped.Connection.CloseReason);
    }

    [Fact]
    public async Task HeartbeatTimedOut_AbortsTheSocketOnce_ClosedForThatReason()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options());
        run.Start();

        run.Connection.HeartbeatTimedOut();
        run.Connection.HeartbeatTimedOut();
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        Assert.Equal(WebSocketState.Aborted, socket.State);
        Assert.Equal(ParleyMetrics.CloseReasons.HeartbeatTimeout, run.Connection.CloseReason);
    }

    [Fact]
    public async Task AwaitsPeer_WhileWaitingForTheNextFrame_NotBeforeRunningOrWhileHandlingOne()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options());
        var handling = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        run.Handling = handling.Task;
        Assert.False(run.Connection.AwaitsPeer);

        run.Start();
        await WaitUntilAsync(() => run.Connection.AwaitsPeer);
        socket.ReceiveText("""{"type":"ping"}""");
        await run.WaitForReceivedAsync(1);

        // The heartbeat must not count this time against the peer: its answer may be waiting unread.
        Assert.False(run.Connection.AwaitsPeer);
        handling.SetResult();
        await WaitUntilAsync(() => run.Connection.AwaitsPeer);
    }

    [Fact]
    public async Task ConnectionHub_Drain_EndsWhenEverySessionIsRemoved_NotWhenItsSocketEnds()
    {
        // It ended with the sockets' loops, before each session's clean-up (the user's presence and fan-out route) ran:
        // the services that clean-up needs were stopped under it.
        var hub = new ConnectionHub(TestMetrics.Unobserved, TimeProvider.System);
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(), userId: "alice");
        hub.Add(run.Connection);
        run.Start();

        var drain = hub.CloseAllAsync(CloseCodes.GoingAway, "server shutting down", TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.False(drain.IsCompleted);

        hub.Remove(run.Connection);
        await drain.WaitAsync(Timeout, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task ConnectionHub_SocketAddedAfterTheDrainBegan_IsAskedToCloseWithTheSameCode()
    {
        // It passed the draining check before the drain began and was added after the drain's snapshot: nobody asked it
        // to close, and it ran on while the services under it stopped.
        var hub = new ConnectionHub(TestMetrics.Unobserved, TimeProvider.System);
        await hub.CloseAllAsync(CloseCodes.GoingAway, "server shutting down", TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);
        using var socket = new FakeWebSocket();
        await using var late = Run(socket, Options(), userId: "alice");

        hub.Add(late.Connection);

        Assert.Equal((WebSocketCloseStatus)CloseCodes.GoingAway, late.Connection.RequestedClose?.Status);
        Assert.Equal("server shutting down", late.Connection.RequestedClose?.Reason);
    }

    [Fact]
    public async Task ConnectionHub_Observed_ReportsOpenSocketsAndTheFramesWaitingInTheirQueues()
    {
        using var metrics = new TestMetrics();
        using var open = metrics.Collect<int>("parley.connections.open");
        using var queued = metrics.Collect<long>("parley.outbound.queue.depth");
        var hub = new ConnectionHub(metrics.Metrics, TimeProvider.System);
        using var first = new FakeWebSocket();
        using var second = new FakeWebSocket();
        await using var alice = Run(first, Options(), userId: "alice");
        await using var bob = Run(second, Options(), userId: "bob");
        hub.Add(alice.Connection);
        hub.Add(bob.Connection);

        // Not started: what is enqueued stays in the queues.
        hub.Deliver(["alice", "bob"], Frame(0));
        hub.Deliver(["alice"], Frame(1));
        open.RecordObservableInstruments();
        queued.RecordObservableInstruments();

        Assert.Equal(2, open.LastMeasurement?.Value);
        Assert.Equal(3, queued.LastMeasurement?.Value);
    }

    [Fact]
    public async Task TryEnqueue_QueueFullAndPeerNeverReads_SocketAbortedAfterSendTimeout()
    {
        using var socket = new FakeWebSocket();
        socket.BlockSends();
        await using var run = Run(socket, Options(sendTimeout: TimeSpan.FromMilliseconds(300)));
        run.Start();
        run.Connection.TryEnqueue(Frame(0));
        await socket.SendBlocked.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        for (var i = 1; i <= QueueCapacity + 1; i++)
        {
            run.Connection.TryEnqueue(Frame(i));
        }

        await socket.Aborted.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Empty(socket.Sent);
        Assert.Empty(run.Reported);
    }

    [Fact]
    public async Task Deliver_OneOfTheUsersSocketsIsASlowConsumer_OnlyThatOneIsClosedTheOthersGetEveryFrame()
    {
        using var slowSocket = new FakeWebSocket();
        using var healthySocket = new FakeWebSocket();
        using var otherUserSocket = new FakeWebSocket();
        slowSocket.BlockSends();
        await using var slow = Run(slowSocket, Options(), userId: "alice");
        await using var healthy = Run(healthySocket, Options(), userId: "alice");
        await using var otherUser = Run(otherUserSocket, Options(), userId: "bob");
        var hub = new ConnectionHub(TestMetrics.Unobserved, TimeProvider.System);
        foreach (var run in new[] { slow, healthy, otherUser })
        {
            hub.Add(run.Connection);
            run.Start();
        }

        // Each frame is enqueued only after the previous one was sent on the healthy sockets, so they never fill
        // up; the slow socket never sends, so its queue overflows.
        const int Frames = QueueCapacity * 3;
        for (var i = 0; i < Frames; i++)
        {
            hub.Deliver(["alice", "bob"], Frame(i));
            await healthySocket.WaitForSentAsync(i + 1, Timeout);
            await otherUserSocket.WaitForSentAsync(i + 1, Timeout);
        }

        slowSocket.ReleaseSends();
        Assert.Equal((WebSocketCloseStatus)CloseCodes.SlowConsumer, await slowSocket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await slow.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Equal(Enumerable.Range(0, Frames), healthySocket.Sent.Select(Index));
        Assert.Equal(Enumerable.Range(0, Frames), otherUserSocket.Sent.Select(Index));
        Assert.False(healthySocket.CloseSent.IsCompleted);
        Assert.False(healthy.Connection.Completion.IsCompleted);
        Assert.Equal(WebSocketState.Open, healthySocket.State);
    }

    [Fact]
    public async Task Send_NotCompletedWithinSendTimeout_AbortsTheSocket()
    {
        using var socket = new FakeWebSocket();
        socket.BlockSends();
        await using var run = Run(socket, Options(sendTimeout: TimeSpan.FromMilliseconds(200)));
        run.Start();

        run.Connection.TryEnqueue(Frame(0));

        await socket.Aborted.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Empty(run.Reported);
        Assert.False(socket.CloseSent.IsCompleted);
    }

    [Fact]
    public async Task Send_EachSendWithinTimeoutButAllTogetherLonger_NothingIsAborted()
    {
        // The timeout is per send: fifteen sends of 100 ms each take longer than one timeout of 1 s.
        using var socket = new FakeWebSocket { SendDelay = TimeSpan.FromMilliseconds(100) };
        await using var run = Run(socket, Options(capacity: 64, sendTimeout: TimeSpan.FromSeconds(1)));
        run.Start();

        for (var i = 0; i < 15; i++)
        {
            run.Connection.TryEnqueue(Frame(i));
        }

        await socket.WaitForSentAsync(15, Timeout);
        Assert.False(socket.Aborted.IsCompleted);
        Assert.Equal(WebSocketState.Open, socket.State);
    }

    [Fact]
    public async Task Receive_PeerCloses_AnsweredWith1000AndBothLoopsEnd()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options());
        run.Start();

        socket.ReceiveClose(WebSocketCloseStatus.NormalClosure);

        Assert.Equal(WebSocketCloseStatus.NormalClosure, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.False(socket.Aborted.IsCompleted);
    }

    [Fact]
    public async Task RequestClose_PeerNeverAnswers_AbortedAfterCloseTimeout()
    {
        using var socket = new FakeWebSocket { AnswersClose = false };
        await using var run = Run(socket, Options());
        run.Start();

        run.Connection.RequestClose(CloseCodes.GoingAway, "shutting down");

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await socket.Aborted.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task RequestClose_Twice_TheFirstStatusWins()
    {
        using var socket = new FakeWebSocket();
        socket.BlockSends();
        await using var run = Run(socket, Options());
        run.Start();
        run.Connection.TryEnqueue(Frame(0));
        await socket.SendBlocked.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        run.Connection.RequestClose(CloseCodes.TokenExpired, "token expired");
        run.Connection.RequestClose(CloseCodes.GoingAway, "shutting down");
        socket.ReleaseSends();

        Assert.Equal((WebSocketCloseStatus)CloseCodes.TokenExpired, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
    }

    [Fact]
    public void RequestClose_SeenFromAnotherThread_AlwaysWithItsStatusAndReason()
    {
        // Reproduction: RequestClose set its flag before the status and reason, so a send loop that saw the flag in
        // between closed a slow consumer with 1000 instead of 4001. Here another thread reads the request the moment
        // it appears, as the send loop does, on many connections: not one may show the default status.
        const int Rounds = 20_000;
        var connections = Enumerable.Range(0, Rounds)
            .Select(_ => new Connection(Guid.NewGuid().ToString("N"), "alice", "device", acks: false, new FakeWebSocket(), Options(), 4096, NullLogger.Instance, TestMetrics.Unobserved))
            .ToArray();
        var watching = -1;
        var torn = 0;
        var deadline = DateTime.UtcNow + Timeout;
        var observer = new Thread(() =>
        {
            for (var i = 0; i < Rounds; i++)
            {
                Volatile.Write(ref watching, i);
                var request = connections[i].RequestedClose;
                while (request is null)
                {
                    if (DateTime.UtcNow > deadline)
                    {
                        return;
                    }

                    request = connections[i].RequestedClose;
                }

                if (request.Status != (WebSocketCloseStatus)CloseCodes.SlowConsumer || request.Reason != "send queue overflow")
                {
                    torn++;
                }
            }
        });
        observer.Start();
        try
        {
            for (var i = 0; i < Rounds; i++)
            {
                // Close only once the observer is watching this connection, so that the two really race.
                while (Volatile.Read(ref watching) < i)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the observer stopped watching");
                }

                connections[i].RequestClose(CloseCodes.SlowConsumer, "send queue overflow");
            }
        }
        finally
        {
            Assert.True(observer.Join(Timeout), "the observer did not finish");
            foreach (var connection in connections)
            {
                connection.Dispose();
            }
        }

        Assert.Equal(0, torn);
    }

    [Fact]
    public async Task Receive_MessageInFragmentsLargerThanTheInitialBuffer_HandedOverWhole()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(), maxFrameBytes: 64 * 1024);
        run.Start();
        var text = JsonSerializer.Serialize(new { type = "x", pad = new string('p', 20_000) });

        socket.ReceiveText(text, fragmentSize: 3000);
        socket.ReceiveText("""{"type":"after"}""");

        await run.WaitForReceivedAsync(2);
        Assert.Equal([text, """{"type":"after"}"""], run.Received);
        Assert.False(socket.CloseSent.IsCompleted);
    }

    [Theory]
    [InlineData(4096, 1)]
    [InlineData(4096, 4096)]
    [InlineData(5000, 700)]
    [InlineData(5000, 100_000)]
    public async Task Receive_MessageOfExactlyMaxFrameBytes_IsAccepted(int maxFrameBytes, int fragmentSize)
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(), maxFrameBytes: maxFrameBytes);
        run.Start();
        var text = Sized(maxFrameBytes);

        socket.ReceiveText(text, fragmentSize);

        await run.WaitForReceivedAsync(1);
        Assert.Equal(text, run.Received[0]);
        Assert.False(socket.CloseSent.IsCompleted);
    }

    [Theory]
    [InlineData(4096, 4096)]
    [InlineData(4096, 100_000)]
    [InlineData(5000, 700)]
    [InlineData(5000, 100_000)]
    public async Task Receive_MessageOneByteOverMaxFrameBytes_ClosesWith1009WithoutHandingItOver(int maxFrameBytes, int fragmentSize)
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(), maxFrameBytes: maxFrameBytes);
        run.Start();

        socket.ReceiveText(Sized(maxFrameBytes + 1), fragmentSize);
        socket.ReceiveText("""{"type":"after the big one"}""");

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Empty(run.Received);
    }

    [Fact]
    public async Task Receive_OversizedMessageNeverFinished_ClosesWith1009AtOnce()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(), maxFrameBytes: 4096);
        run.Start();

        // 6000 bytes so far, and the peer never sends the last fragment.
        for (var i = 0; i < 6; i++)
        {
            socket.ReceiveFragment(new string('x', 1000), endOfMessage: false);
        }

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Empty(run.Received);
    }

    [Fact]
    public async Task Receive_OversizedMessageThenMore_RestIsDrainedNotHandedOver()
    {
        using var socket = new FakeWebSocket { AnswersClose = false };
        await using var run = Run(socket, Options(), maxFrameBytes: 4096);
        run.Start();

        socket.ReceiveText(Sized(10_000), fragmentSize: 1500);
        socket.ReceiveText("""{"type":"sent after the big one"}""");

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, await socket.CloseSent.WaitAsync(Timeout, TestContext.Current.CancellationToken));
        // The peer's answer comes after everything it sent before it: none of that is processed.
        socket.ReceiveClose(WebSocketCloseStatus.NormalClosure);
        await run.Connection.Completion.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Empty(run.Received);
        Assert.False(socket.Aborted.IsCompleted, "the close handshake completed; nothing had to be aborted");
    }

    [Fact]
    public async Task Receive_BinaryMessage_HandedOverAsBinaryInOrder()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options());
        run.Start();

        socket.ReceiveMessage([1, 2, 3], WebSocketMessageType.Binary);
        socket.ReceiveText("""{"type":"ping"}""");

        await run.WaitForReceivedAsync(2);
        Assert.Equal(["(Binary, 3 bytes)", """{"type":"ping"}"""], run.Received);
        Assert.False(socket.CloseSent.IsCompleted);
    }

    [Fact]
    public async Task Receive_EmptyTextMessage_HandedOverAsEmpty()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options());
        run.Start();

        socket.ReceiveText("");
        socket.ReceiveText("""{"type":"next"}""");

        await run.WaitForReceivedAsync(2);
        Assert.Equal(["", """{"type":"next"}"""], run.Received);
    }

    [Fact]
    public async Task Hold_LiveFramesWaitButTypingFlowsAndIsDroppedRatherThanOverflowing()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Delivery.Hold();
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));
        Assert.True(run.Connection.TryEnqueue(Frame(1, transient: true)));

        // The typing frame is written during the hold; the sequenced one waits for the release.
        await socket.WaitForSentAsync(1, Timeout);
        Assert.Equal([1], socket.Sent.Select(Index));
        run.Delivery.Release();
        await socket.WaitForSentAsync(2, Timeout);
        Assert.Equal([1, 0], socket.Sent.Select(Index));

        // A full queue during a hold (a catch-up filling it) drops typing frames instead of closing with 4001.
        socket.BlockSends();
        run.Delivery.Hold();
        for (var i = 0; i < 80; i++)
        {
            Assert.True(run.Connection.TryEnqueue(Frame(100 + i, transient: true)));
        }

        socket.ReleaseSends();
        run.Delivery.Release();
        // The queue's worth went out (the rest was dropped) and the connection is still open.
        var deadline = DateTime.UtcNow + Timeout;
        while (socket.Sent.Count(f => Index(f) >= 100) < 64)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {socket.Sent.Count(f => Index(f) >= 100)} typing frames were sent");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        var before = socket.Sent.Count;
        Assert.True(run.Connection.TryEnqueue(Frame(2)));
        await socket.WaitForSentAsync(before + 1, Timeout);
        Assert.Equal(2, Index(socket.Sent[^1]));
        Assert.False(socket.CloseSent.IsCompleted);
        Assert.InRange(socket.Sent.Count(f => Index(f) >= 100), 64, 65);
    }

    [Fact]
    public async Task ReleaseAsync_AfterACatchUpFilledTheQueue_WaitsForRoomInOrderInsteadOfClosing()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        var ct = TestContext.Current.CancellationToken;
        socket.BlockSends(); // a reader that is merely slower than the store
        run.Delivery.HoldForCatchUp();
        run.Start();
        for (var i = 0; i < 10; i++)
        {
            Assert.True(run.Connection.TryEnqueue(Frame(200 + i))); // live, held during the catch-up
        }

        for (var i = 0; i < 64; i++)
        {
            await run.Connection.EnqueueAsync(Frame(i), ct); // the catch-up, which waits for room
        }

        var release = run.Delivery.ReleaseAsync(null, ct);
        Assert.True(run.Connection.TryEnqueue(Frame(210))); // live meanwhile: behind the held ones
        Assert.False(release.IsCompleted);
        Assert.False(run.Connection.IsClosing);

        socket.ReleaseSends();
        await release.WaitAsync(Timeout, ct);
        await socket.WaitForSentAsync(75, Timeout);
        Assert.Equal([.. Enumerable.Range(0, 64), .. Enumerable.Range(200, 11)], socket.Sent.Select(Index));
        Assert.False(socket.CloseSent.IsCompleted);
    }

    [Fact]
    public async Task HoldForCatchUp_TheFirstFrameWaitEndingDoesNotReleaseIt_OnlyTheCatchUpDoes()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Delivery.Hold();
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));

        // A resume arrives as the first-frame wait ends: the catch-up's hold wins.
        run.Delivery.HoldForCatchUp();
        run.Delivery.EndFirstFrameWait();
        Assert.True(run.Connection.TryEnqueue(Frame(1)));
        Assert.True(run.Delivery.IsHolding);
        // A typing frame is not held and the send queue is FIFO: once it is written, frames 0 and 1 would have
        // been written before it had the first-frame wait released them.
        Assert.True(run.Connection.TryEnqueue(Frame(2, transient: true)));
        await socket.WaitForSentAsync(1, Timeout);
        Assert.Equal([2], socket.Sent.Select(Index));

        run.Delivery.Release();
        await socket.WaitForSentAsync(3, Timeout);
        Assert.Equal([2, 0, 1], socket.Sent.Select(Index));
    }

    [Fact]
    public async Task Hold_TheFirstFrameWaitEnding_ReleasesIt()
    {
        using var socket = new FakeWebSocket();
        await using var run = Run(socket, Options(capacity: 64));
        run.Delivery.Hold();
        run.Start();
        Assert.True(run.Connection.TryEnqueue(Frame(0)));

        run.Delivery.EndFirstFrameWait();

        await socket.WaitForSentAsync(1, Timeout);
        Assert.Equal([0], socket.Sent.Select(Index));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold in time");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    private static RealtimeOptions Options(int capacity = QueueCapacity, TimeSpan? sendTimeout = null) => new()
    {
        SendQueueCapacity = capacity,
        SendTimeout = sendTimeout ?? TimeSpan.FromSeconds(5),
        CloseTimeout = TimeSpan.FromMilliseconds(500),
    };

    private static ConnectionRun Run(
        FakeWebSocket socket, RealtimeOptions options, string userId = "alice", int maxFrameBytes = 4096, ParleyMetrics? metrics = null) =>
        new(
            new Connection(
                Guid.NewGuid().ToString("N"), userId, "device", acks: false, socket, options, maxFrameBytes, NullLogger.Instance, metrics ?? TestMetrics.Unobserved),
            options.SendQueueCapacity);

    private static OutboundFrame Frame(int index, bool transient = false) =>
        new(Encoding.UTF8.GetBytes($$$"""{"type":"test","payload":{"index":{{{index}}}}}"""), "test", transient: transient);

    private static OutboundFrame Sequenced(Guid conversationId, long seq) =>
        new(Encoding.UTF8.GetBytes($$$"""{"type":"test","payload":{"conversation_id":"{{{conversationId}}}","seq":{{{seq}}}}}"""), "test", conversationId, seq);

    private static (Guid ConversationId, long Seq) Position(string frame)
    {
        using var json = JsonDocument.Parse(frame);
        var payload = json.RootElement.GetProperty("payload");
        return (payload.GetProperty("conversation_id").GetGuid(), payload.GetProperty("seq").GetInt64());
    }

    private static string Type(string frame)
    {
        using var json = JsonDocument.Parse(frame);
        return json.RootElement.GetProperty("type").GetString()!;
    }

    private static int Index(string frame)
    {
        using var json = JsonDocument.Parse(frame);
        return json.RootElement.GetProperty("payload").GetProperty("index").GetInt32();
    }

    /// <summary>A JSON text frame of exactly <paramref name="bytes"/> ASCII bytes.</summary>
    private static string Sized(int bytes)
    {
        const string Prefix = "{\"type\":\"x\",\"pad\":\"";
        const string Suffix = "\"}";
        return Prefix + new string('p', bytes - Prefix.Length - Suffix.Length) + Suffix;
    }

    /// <summary>A connection's <see cref="Connection.RunAsync"/> with recorded callbacks; disposing ends it.</summary>
    private sealed class ConnectionRun(Connection connection, int sendQueueCapacity) : IAsyncDisposable
    {
        // Delivery's rules on the connection's outbound path (hold, skip of written seqs), as the endpoint installs them.
        public SocketDelivery Delivery { get; } = new(connection, sendQueueCapacity);

        private readonly Lock _lock = new();
        private readonly List<string> _received = [];
        private readonly List<string> _reported = [];
        private readonly SemaphoreSlim _receivedSignal = new(0);
        private Task _run = Task.CompletedTask;

        public Connection Connection => connection;

        public IReadOnlyList<string> Received
        {
            get
            {
                lock (_lock)
                {
                    return [.. _received];
                }
            }
        }

        /// <summary>The frames the send loop reported as written (the delivered hook), in order.</summary>
        public IReadOnlyList<string> Reported
        {
            get
            {
                lock (_lock)
                {
                    return [.. _reported];
                }
            }
        }

        /// <summary>What handling a received frame waits for (a slow store, say); done by default.</summary>
        public Task Handling { get; set; } = Task.CompletedTask;

        public void Start() =>
            _run = connection.RunAsync(
                (_, frame, type, _) =>
                {
                    lock (_lock)
                    {
                        _received.Add(type == WebSocketMessageType.Text ? Encoding.UTF8.GetString(frame.Span) : $"({type}, {frame.Length} bytes)");
                    }

                    _receivedSignal.Release();
                    return Handling;
                },
                (_, frame) =>
                {
                    lock (_lock)
                    {
                        _reported.Add(Encoding.UTF8.GetString(frame.Utf8.Span));
                    }
                },
                TestContext.Current.CancellationToken);

        public async Task WaitForReceivedAsync(int count)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (Received.Count < count)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !await _receivedSignal.WaitAsync(left, TestContext.Current.CancellationToken))
                {
                    throw new TimeoutException($"Only {Received.Count} of {count} messages were handed over within {Timeout}.");
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            connection.RequestClose(CloseCodes.GoingAway, "test over");
            await _run.WaitAsync(Timeout, TestContext.Current.CancellationToken);
            _receivedSignal.Dispose();
        }
    }
}

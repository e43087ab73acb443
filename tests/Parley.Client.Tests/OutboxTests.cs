using System.Net.WebSockets;
using Microsoft.Extensions.Time.Testing;
using Parley.Client.Protocol;
using Parley.Client.Realtime;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// The outbox on its own: pending sends go out on every socket in order, frames a full socket queue refuses are
/// kept (sends retried, acks due, typing reported), refusals are sorted into passing and final.
/// </summary>
[Trait("Store", "Independent")]
public sealed class OutboxTests : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = FakeParley.Timeout;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");

    private readonly FakeTimeProvider _time = new();
    private readonly Signal _retryDue = new();
    private readonly Outbox _outbox;
    private readonly AckPacer _acks;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<(Task Run, FakeSocket Server)> _sessions = [];

    public OutboxTests()
    {
        _outbox = new Outbox(_time, RetryDelay, _retryDue);
        _acks = new AckPacer(_time);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly Guid D = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafd3");

    private static PendingSend Send(string clientMessageId, Guid? conversationId = null)
    {
        var conversation = conversationId ?? C;
        return new(conversation, clientMessageId, ClientFrames.SendMessage(
            SendMessageRequest.Text(conversation, "hi " + clientMessageId, clientMessageId), PendingSend.KeyOf(conversation, clientMessageId)));
    }

    private static Message Stored(Guid conversationId, long seq, string clientMessageId) =>
        new() { ConversationId = conversationId, Seq = seq, SenderId = "alice", ClientMessageId = clientMessageId };

    /// <summary>A running session whose frames reach the returned fake server.</summary>
    private (Session Session, FakeSocket Server) Running()
    {
        var (client, server) = FakeParley.CreatePair();
        var session = new Session(client, false, (_, _, _) => ValueTask.CompletedTask, 1 << 20, 16, TimeProvider.System);
        _sessions.Add((session.RunAsync(_stopping.Token), server));
        return (session, server);
    }

    /// <summary>A session that is never run: its queue fills after <paramref name="capacity"/> frames.</summary>
    private static Session Stalled(int capacity) =>
        new(WebSocket.CreateFromStream(Stream.Null, new WebSocketCreationOptions()), false, (_, _, _) => ValueTask.CompletedTask, 1 << 20, capacity, TimeProvider.System);

    [Fact]
    public async Task Attach_SendsMadeWhileDisconnected_GoOutInOrder()
    {
        _outbox.Add(Send("c-1"));
        _outbox.Add(Send("c-2"));
        var (session, server) = Running();

        _outbox.Attach(session, _acks);

        Assert.Equal("c-1", (await server.NextAsync("send_message")).GetProperty("client_message_id").GetString());
        Assert.Equal("c-2", (await server.NextAsync("send_message")).GetProperty("client_message_id").GetString());
    }

    [Fact]
    public async Task Attach_NextSocket_UnacknowledgedSendsGoOutAgainButAcknowledgedOnesNot()
    {
        var (first, firstServer) = Running();
        _outbox.Attach(first, _acks);
        _outbox.Add(Send("c-1"));
        _outbox.Add(Send("c-2"));
        await firstServer.NextAsync("send_message");
        _outbox.Acknowledged(Stored(C, 1, "c-1"));
        _outbox.Detach(first);

        var (second, secondServer) = Running();
        _outbox.Attach(second, _acks);

        Assert.Equal("c-2", (await secondServer.NextAsync("send_message")).GetProperty("client_message_id").GetString());
        await secondServer.AssertNoFrameAsync("send_message", TimeSpan.FromMilliseconds(200));
        Assert.True(_outbox.HasPendingSends);
    }

    [Fact]
    public async Task Add_SocketQueueFull_KeptAndResentOnceTheRetryDelayPassed()
    {
        var stalled = Stalled(capacity: 1);
        _outbox.Attach(stalled, _acks);
        _outbox.Add(Send("c-1"));

        _outbox.Add(Send("c-2"));

        // Refused by the full queue: not dropped but scheduled, and the maintenance loop is woken to see it.
        await _retryDue.WaitAsync(Ct).WaitAsync(Timeout, Ct);
        Assert.Equal(RetryDelay, _outbox.UntilNextRetry());
        Assert.True(_outbox.HasPendingSends);

        _outbox.Detach(stalled);
        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        await server.NextAsync("send_message", p => p.GetProperty("client_message_id").GetString() == "c-2");
    }

    [Fact]
    public async Task ResendDue_RetryTimeCame_ResentOnTheCurrentSocket()
    {
        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        var send = Send("c-3");
        _outbox.Add(send);
        await server.NextAsync("send_message");

        Assert.True(_outbox.Refused(null, "c-3", ParleyErrorCodes.RateLimited, "slow down"));
        _outbox.ResendDue();
        await server.AssertNoFrameAsync("send_message", TimeSpan.FromMilliseconds(100));

        _time.Advance(RetryDelay);
        _outbox.ResendDue();
        Assert.Equal("c-3", (await server.NextAsync("send_message")).GetProperty("client_message_id").GetString());
        Assert.False(send.Completion.Task.IsCompleted);
        Assert.Null(_outbox.UntilNextRetry());
    }

    [Fact]
    public async Task Add_WhileAnEarlierSendWaitsForItsRetry_WaitsBehindIt_SoTheyAreStoredInOrder()
    {
        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        _outbox.Add(Send("c-5"));
        await server.NextAsync("send_message");
        Assert.True(_outbox.Refused(null, "c-5", ParleyErrorCodes.RateLimited, "slow down"));

        _outbox.Add(Send("c-6"));
        await server.AssertNoFrameAsync("send_message", TimeSpan.FromMilliseconds(100));

        _time.Advance(RetryDelay);
        _outbox.ResendDue();
        Assert.Equal("c-5", (await server.NextAsync("send_message")).GetProperty("client_message_id").GetString());
        Assert.Equal("c-6", (await server.NextAsync("send_message")).GetProperty("client_message_id").GetString());
    }

    [Fact]
    public async Task UntilNextRetry_WhileNoSocketIsAttached_IsNone_SoTheLoopSleepsUntilTheNextSocket()
    {
        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        _outbox.Add(Send("c-7"));
        await server.NextAsync("send_message");
        Assert.True(_outbox.Refused(null, "c-7", ParleyErrorCodes.ServiceUnavailable, "try again"));
        _outbox.Detach(session);

        _time.Advance(RetryDelay * 3); // the retry is overdue, but there is no socket to send it on

        Assert.Null(_outbox.UntilNextRetry());
        var (next, nextServer) = Running();
        _outbox.Attach(next, _acks);
        Assert.Equal("c-7", (await nextServer.NextAsync("send_message")).GetProperty("client_message_id").GetString());
    }

    [Fact]
    public async Task Refused_FinalCode_FailsTheSendWithIt()
    {
        var send = Send("c-4");
        _outbox.Add(send);

        Assert.True(_outbox.Refused(null, "c-4", ParleyErrorCodes.IdempotencyConflict, "different body"));

        var error = await Assert.ThrowsAsync<ParleyApiException>(() => send.Completion.Task.WaitAsync(Timeout, Ct));
        Assert.Equal(ParleyErrorCodes.IdempotencyConflict, error.Code);
        Assert.False(_outbox.HasPendingSends);
    }

    [Fact]
    public async Task Acknowledged_SameClientMessageIdInAnotherConversation_CompletesOnlyTheSendOfThatConversation()
    {
        // client_message_id is unique per sender and conversation: another device of the user may use "c-17" elsewhere,
        // and this device may too.
        var inC = Send("c-17");
        var inD = Send("c-17", D);
        _outbox.Add(inC);
        _outbox.Add(inD);

        _outbox.Acknowledged(Stored(Guid.CreateVersion7(), 1, "c-17")); // a third conversation: neither
        _outbox.Acknowledged(Stored(D, 4, "c-17"));

        Assert.Equal(D, (await inD.Completion.Task.WaitAsync(Timeout, Ct)).ConversationId);
        Assert.False(inC.Completion.Task.IsCompleted);
        Assert.Throws<InvalidOperationException>(() => _outbox.Add(Send("c-17")));
        _outbox.Acknowledged(Stored(C, 9, "c-17"));
        Assert.Equal(9, (await inC.Completion.Task.WaitAsync(Timeout, Ct)).Seq);
    }

    [Fact]
    public async Task Refused_NamedByTheEchoedFrameId_FailsTheSendOfThatConversation()
    {
        var inC = Send("c-18");
        var inD = Send("c-18", D);
        _outbox.Add(inC);
        _outbox.Add(inD);

        Assert.True(_outbox.Refused(inD.Key, "c-18", ParleyErrorCodes.Forbidden, "not a member"));

        Assert.Equal(ParleyErrorCodes.Forbidden, (await Assert.ThrowsAsync<ParleyApiException>(() => inD.Completion.Task.WaitAsync(Timeout, Ct))).Code);
        Assert.False(inC.Completion.Task.IsCompleted);
    }

    [Fact]
    public async Task Refused_InternalError_RetriedThreeTimesWithGrowingDelays_ThenFails()
    {
        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        var send = Send("c-19");
        _outbox.Add(send);
        await server.NextAsync("send_message");

        for (var retry = 0; retry < Outbox.InternalErrorRetries; retry++)
        {
            Assert.True(_outbox.Refused(send.Key, "c-19", ParleyErrorCodes.InternalError, "boom"));
            Assert.Equal(RetryDelay * Math.Pow(2, retry), _outbox.UntilNextRetry());
            _time.Advance(RetryDelay * Math.Pow(2, retry));
            _outbox.ResendDue();
            await server.NextAsync("send_message");
        }

        Assert.True(_outbox.Refused(send.Key, "c-19", ParleyErrorCodes.InternalError, "boom"));

        Assert.Equal(ParleyErrorCodes.InternalError, (await Assert.ThrowsAsync<ParleyApiException>(() => send.Completion.Task.WaitAsync(Timeout, Ct))).Code);
        Assert.False(_outbox.HasPendingSends);
    }

    [Fact]
    public void Refused_NoSuchSend_FalseForTheCallerToReport() =>
        Assert.False(_outbox.Refused(null, "c-unknown", ParleyErrorCodes.RateLimited, null));

    [Fact]
    public async Task Close_WaitingSendsFailAndLaterOnesAreRefused()
    {
        var waiting = Send("c-5");
        _outbox.Add(waiting);
        var error = new ParleyConnectionException("closed with 1009", 1009);

        _outbox.Close(error);

        Assert.Same(error, await Assert.ThrowsAsync<ParleyConnectionException>(() => waiting.Completion.Task.WaitAsync(Timeout, Ct)));
        Assert.Same(error, Assert.Throws<ParleyConnectionException>(() => _outbox.Add(Send("c-6"))));
    }

    [Fact]
    public void TryEnqueue_NotConnectedOrQueueFull_False()
    {
        Assert.False(_outbox.TryEnqueue(ClientFrames.Typing(C, true)));

        _outbox.Attach(Stalled(capacity: 1), _acks);

        Assert.True(_outbox.TryEnqueue(ClientFrames.Typing(C, true)));
        Assert.False(_outbox.TryEnqueue(ClientFrames.Typing(C, false)));
    }

    [Fact]
    public async Task FlushAcks_OnlyWhileASocketIsAttached()
    {
        _acks.Consumed(new MessageCreatedEvent { ConversationId = C, Seq = 2, Message = new Message { ConversationId = C, Seq = 2, SenderId = "bob" } }, "alice");

        Assert.False(_outbox.FlushAcks(_acks));
        Assert.True(_acks.HasDue);

        var (session, server) = Running();
        _outbox.Attach(session, _acks);
        Assert.False(_outbox.FlushAcks(_acks));
        var ack = await server.NextAsync("ack");
        Assert.Equal((C, 2L), (ack.GetProperty("conversation_id").GetGuid(), ack.GetProperty("seq").GetInt64()));
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        foreach (var (run, server) in _sessions)
        {
            await run.WaitAsync(Timeout);
            await server.DisposeAsync();
        }

        _stopping.Dispose();
    }
}

using System.Net.WebSockets;
using System.Text;
using System.Threading.Channels;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The server side of a WebSocket, in memory, for unit tests of <c>Connection</c>. The test plays the peer:
/// it queues what the peer sends (<see cref="ReceiveText"/>, <see cref="ReceiveClose"/>), and reads what the
/// server sent (<see cref="Sent"/>, <see cref="CloseSent"/>, <see cref="Aborted"/>). Sends can be blocked to play
/// a peer that stopped reading. Reads follow <c>ManagedWebSocket</c>: a zero-byte read waits for the next
/// fragment and reports its type without consuming it; a close is answered like a well-behaved peer would.
/// </summary>
internal sealed class FakeWebSocket : WebSocket
{
    private readonly Channel<Fragment> _incoming = Channel.CreateUnbounded<Fragment>();
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _lock = new();
    private readonly List<string> _sent = [];
    private readonly TaskCompletionSource<WebSocketCloseStatus> _closeSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _aborted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _sendBlocked = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _sentSignal = new(0);
    private TaskCompletionSource? _sendGate;
    private Fragment? _current;
    private int _offset;
    private WebSocketState _state = WebSocketState.Open;
    private WebSocketCloseStatus? _closeStatus;

    /// <summary>Answer the server's close frame with one of our own (the peer completes the handshake).</summary>
    public bool AnswersClose { get; init; } = true;

    /// <summary>How long each send takes (a slow network).</summary>
    public TimeSpan SendDelay { get; init; }

    /// <summary>Text messages the server has sent, in order.</summary>
    public IReadOnlyList<string> Sent
    {
        get
        {
            lock (_lock)
            {
                return [.. _sent];
            }
        }
    }

    /// <summary>Completes with the status of the server's close frame.</summary>
    public Task<WebSocketCloseStatus> CloseSent => _closeSent.Task;

    /// <summary>Completes when the server aborted the socket.</summary>
    public Task Aborted => _aborted.Task;

    /// <summary>Completes when a send is waiting behind <see cref="BlockSends"/>.</summary>
    public Task SendBlocked => _sendBlocked.Task;

    public override WebSocketCloseStatus? CloseStatus => _closeStatus;

    public override string? CloseStatusDescription => null;

    public override WebSocketState State => _state;

    public override string? SubProtocol => null;

    /// <summary>From now on every send waits until <see cref="ReleaseSends"/> (or its cancellation token).</summary>
    public void BlockSends() => _sendGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void ReleaseSends() => Interlocked.Exchange(ref _sendGate, null)?.TrySetResult();

    /// <summary>The peer sends a text message, in fragments of at most <paramref name="fragmentSize"/> bytes.</summary>
    public void ReceiveText(string text, int fragmentSize = int.MaxValue) =>
        ReceiveMessage(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, fragmentSize);

    public void ReceiveMessage(byte[] bytes, WebSocketMessageType type, int fragmentSize = int.MaxValue)
    {
        if (bytes.Length == 0)
        {
            _incoming.Writer.TryWrite(new Fragment([], type, EndOfMessage: true));
            return;
        }

        for (var offset = 0; offset < bytes.Length; offset += fragmentSize)
        {
            var length = Math.Min(fragmentSize, bytes.Length - offset);
            _incoming.Writer.TryWrite(new Fragment(bytes[offset..(offset + length)], type, offset + length == bytes.Length));
        }
    }

    /// <summary>The peer sends one fragment of a text message (a message can be left unfinished).</summary>
    public void ReceiveFragment(string text, bool endOfMessage) =>
        _incoming.Writer.TryWrite(new Fragment(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, endOfMessage));

    public void ReceiveClose(WebSocketCloseStatus status) =>
        _incoming.Writer.TryWrite(new Fragment([], WebSocketMessageType.Close, EndOfMessage: true, status));

    /// <summary>Waits until the server has sent at least <paramref name="count"/> messages.</summary>
    public async Task WaitForSentAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Sent.Count < count)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !await _sentSignal.WaitAsync(left, TestContext.Current.CancellationToken))
            {
                throw new TimeoutException($"Only {Sent.Count} of {count} messages were sent within {timeout}.");
            }
        }
    }

    public override void Abort()
    {
        _state = WebSocketState.Aborted;
        _abort.Cancel();
        _aborted.TrySetResult();
    }

    public override Task CloseAsync(WebSocketCloseStatus closeStatus, string? statusDescription, CancellationToken cancellationToken) =>
        CloseOutputAsync(closeStatus, statusDescription, cancellationToken);

    public override Task CloseOutputAsync(WebSocketCloseStatus closeStatus, string? statusDescription, CancellationToken cancellationToken)
    {
        ThrowIfAborted();
        if (_state is WebSocketState.CloseSent or WebSocketState.Closed)
        {
            throw new InvalidOperationException("The server sent a second close frame.");
        }

        _state = _state == WebSocketState.CloseReceived ? WebSocketState.Closed : WebSocketState.CloseSent;
        _closeSent.TrySetResult(closeStatus);
        if (AnswersClose && _state == WebSocketState.CloseSent)
        {
            ReceiveClose(closeStatus);
        }

        return Task.CompletedTask;
    }

    public override async Task<WebSocketReceiveResult> ReceiveAsync(ArraySegment<byte> buffer, CancellationToken cancellationToken)
    {
        var result = await ReceiveAsync(buffer.AsMemory(), cancellationToken);
        return new WebSocketReceiveResult(result.Count, result.MessageType, result.EndOfMessage, _closeStatus, null);
    }

    public override async ValueTask<ValueWebSocketReceiveResult> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ThrowIfAborted();
        if (_current is null)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _abort.Token);
            try
            {
                _current = await _incoming.Reader.ReadAsync(linked.Token);
            }
            catch (OperationCanceledException) when (_abort.IsCancellationRequested)
            {
                throw new WebSocketException(WebSocketError.InvalidState, "The socket was aborted.");
            }

            _offset = 0;
        }

        var fragment = _current;
        if (fragment.Type == WebSocketMessageType.Close)
        {
            _current = null;
            _closeStatus = fragment.CloseStatus;
            _state = _state == WebSocketState.CloseSent ? WebSocketState.Closed : WebSocketState.CloseReceived;
            return new ValueWebSocketReceiveResult(0, WebSocketMessageType.Close, true);
        }

        var count = Math.Min(buffer.Length, fragment.Bytes.Length - _offset);
        fragment.Bytes.AsSpan(_offset, count).CopyTo(buffer.Span);
        _offset += count;
        var fragmentDone = _offset == fragment.Bytes.Length;
        if (fragmentDone && (count > 0 || fragment.Bytes.Length == 0))
        {
            _current = null;
        }

        return new ValueWebSocketReceiveResult(count, fragment.Type, fragment.EndOfMessage && fragmentDone);
    }

    public override Task SendAsync(ArraySegment<byte> buffer, WebSocketMessageType messageType, bool endOfMessage, CancellationToken cancellationToken) =>
        SendAsync(buffer.AsMemory(), messageType, endOfMessage, cancellationToken).AsTask();

    public override async ValueTask SendAsync(ReadOnlyMemory<byte> buffer, WebSocketMessageType messageType, bool endOfMessage, CancellationToken cancellationToken)
    {
        ThrowIfAborted();
        Assert.True(endOfMessage, "Parley sends every frame as one WebSocket message.");
        Assert.Equal(WebSocketMessageType.Text, messageType);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _abort.Token);
        if (_sendGate is { } gate)
        {
            _sendBlocked.TrySetResult();
            await gate.Task.WaitAsync(linked.Token);
        }

        if (SendDelay > TimeSpan.Zero)
        {
            await Task.Delay(SendDelay, linked.Token);
        }

        ThrowIfAborted();
        lock (_lock)
        {
            _sent.Add(Encoding.UTF8.GetString(buffer.Span));
        }

        _sentSignal.Release();
    }

    public override void Dispose()
    {
        _abort.Dispose();
        _sentSignal.Dispose();
    }

    private void ThrowIfAborted()
    {
        if (_state == WebSocketState.Aborted)
        {
            throw new WebSocketException(WebSocketError.InvalidState, "The socket was aborted.");
        }
    }

    private sealed record Fragment(byte[] Bytes, WebSocketMessageType Type, bool EndOfMessage, WebSocketCloseStatus? CloseStatus = null);
}

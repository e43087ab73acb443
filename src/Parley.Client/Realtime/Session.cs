using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;

namespace Parley.Client.Realtime;

/// <summary>How one socket ended.</summary>
internal sealed record SessionEnd(int? CloseStatus, string? CloseDescription, Exception? Error, bool Restart);

/// <summary>
/// Handles one server frame (UTF-8 JSON). The receive loop awaits it before reading the next frame: that is how
/// the event queue's back-pressure reaches the socket. <paramref name="utf8"/> is valid until it completes.
/// </summary>
internal delegate ValueTask FrameHandler(Session session, ReadOnlyMemory<byte> utf8, CancellationToken stopping);

/// <summary>
/// One socket. The receive loop is its only reader and hands each frame to the <see cref="FrameHandler"/>
/// (frames are handled one at a time, in the order received); the send loop is its only writer, draining a
/// bounded queue and writing the close frame last.
/// </summary>
/// <remarks>
/// The outbound queue holds <c>outboundCapacity</c> frames (acks, sends, typing, read receipts). It fills only when
/// the socket cannot write (a stalled network, which the keep-alive ends); <see cref="TryEnqueue"/> then returns
/// false and the caller keeps what it could not send: acks stay due, sends are resent later, typing and read
/// receipts report false to the app. Every field is confined to one loop or set once, except the close request
/// (first caller wins, through <c>_closeRequested</c>) and <c>_restart</c>.
/// </remarks>
internal sealed class Session(WebSocket socket, bool presentedCursor, FrameHandler onFrame, int maxReceiveFrameBytes, int outboundCapacity, TimeProvider time)
{
    /// <summary>How long a close handshake may take before the socket is aborted.</summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(2);

    private const int InitialReceiveBuffer = 16 * 1024;

    private readonly Channel<byte[]> _outbound = Channel.CreateBounded<byte[]>(
        new BoundedChannelOptions(outboundCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });

    private int _closeRequested;
    private WebSocketCloseStatus _closeStatus = WebSocketCloseStatus.NormalClosure;
    private string _closeReason = string.Empty;
    private volatile bool _restart;

    /// <summary>The connection presented a cursor: the server resumes (catch-up, then <c>sync_complete</c>).</summary>
    public bool PresentedCursor { get; } = presentedCursor;

    /// <summary>Queues a frame for the send loop; false when the queue is full or the socket is closing.</summary>
    public bool TryEnqueue(byte[] frame) => _outbound.Writer.TryWrite(frame);

    /// <summary>Ends this socket so that the owner reconnects at once (after a cursor was refused).</summary>
    public void Restart()
    {
        _restart = true;
        RequestClose(WebSocketCloseStatus.NormalClosure, "resync");
    }

    /// <summary>Queued frames are still sent, then the close frame; the first request wins.</summary>
    public void RequestClose(WebSocketCloseStatus status, string reason)
    {
        if (Interlocked.Exchange(ref _closeRequested, 1) != 0)
        {
            return;
        }

        _closeStatus = status;
        _closeReason = reason;
        _outbound.Writer.TryComplete();
    }

    /// <summary>Runs until the socket closes or fails; stopping closes it gracefully (aborting after <see cref="CloseTimeout"/>).</summary>
    public async Task<SessionEnd> RunAsync(CancellationToken stopping)
    {
        var send = SendLoopAsync();
        ITimer? abortTimer = null;
        SessionEnd end;
        await using (stopping.Register(() =>
        {
            RequestClose(WebSocketCloseStatus.NormalClosure, "client closing");
            abortTimer = time.CreateTimer(_ => socket.Abort(), null, CloseTimeout, Timeout.InfiniteTimeSpan);
        }))
        {
            end = await ReceiveLoopAsync(stopping);
        }

        // The peer closed or the socket failed: answer its close (or stop) and give the send loop a moment.
        RequestClose(WebSocketCloseStatus.NormalClosure, string.Empty);
        if (await Task.WhenAny(send, Task.Delay(CloseTimeout, time, CancellationToken.None)) != send)
        {
            socket.Abort();
        }

        await send;
        abortTimer?.Dispose();
        socket.Dispose();
        return end with { Restart = _restart };
    }

    private async Task SendLoopAsync()
    {
        try
        {
            var reader = _outbound.Reader;
            while (await reader.WaitToReadAsync(CancellationToken.None))
            {
                while (reader.TryRead(out var frame))
                {
                    await socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
                }
            }

            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await socket.CloseOutputAsync(_closeStatus, _closeReason, CancellationToken.None);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            socket.Abort();
        }
    }

    private async Task<SessionEnd> ReceiveLoopAsync(CancellationToken stopping)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(InitialReceiveBuffer);
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == buffer.Length)
                    {
                        if (count >= maxReceiveFrameBytes)
                        {
                            RequestClose(WebSocketCloseStatus.MessageTooBig, "frame too big");
                            return new SessionEnd(null, null, new WebSocketException($"A server frame exceeded {maxReceiveFrameBytes} bytes."), false);
                        }

                        var larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, maxReceiveFrameBytes));
                        buffer.AsSpan(0, count).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = larger;
                    }

                    result = await socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return new SessionEnd((int?)socket.CloseStatus, socket.CloseStatusDescription, null, false);
                    }

                    count += result.Count;
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Text)
                {
                    // Waits while the app's event queue is full (back-pressure), until stopping.
                    await onFrame(this, buffer.AsMemory(0, count), stopping);
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // Aborted (keep-alive timeout, network loss, stopping) or the peer vanished without a close frame.
            return new SessionEnd(null, null, ex, false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

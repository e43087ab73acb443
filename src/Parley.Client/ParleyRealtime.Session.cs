using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;

namespace Parley.Client;

public sealed partial class ParleyRealtime
{
    /// <summary>How one socket ended.</summary>
    private sealed record SessionEnd(int? CloseStatus, string? CloseDescription, Exception? Error, bool Restart);

    /// <summary>
    /// One socket. The receive loop is its only reader and hands each frame to the owner inline (frames are
    /// handled in the order received); the send loop is its only writer, draining an unbounded queue (what a
    /// client queues is small: acks, sends, typing) and writing the close frame last.
    /// </summary>
    private sealed class Session(ParleyRealtime owner, WebSocket socket, bool presentedCursor)
    {
        private const int InitialReceiveBuffer = 16 * 1024;

        private readonly Channel<byte[]> _outbound = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
        private int _closeRequested;
        private WebSocketCloseStatus _closeStatus = WebSocketCloseStatus.NormalClosure;
        private string _closeReason = string.Empty;
        private volatile bool _restart;

        public bool PresentedCursor { get; } = presentedCursor;

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
                abortTimer = owner._time.CreateTimer(_ => socket.Abort(), null, CloseTimeout, Timeout.InfiniteTimeSpan);
            }))
            {
                end = await ReceiveLoopAsync();
            }

            // The peer closed or the socket failed: answer its close (or stop) and give the send loop a moment.
            RequestClose(WebSocketCloseStatus.NormalClosure, string.Empty);
            if (await Task.WhenAny(send, Task.Delay(CloseTimeout, owner._time, CancellationToken.None)) != send)
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

        private async Task<SessionEnd> ReceiveLoopAsync()
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
                            if (count >= owner._options.MaxReceiveFrameBytes)
                            {
                                RequestClose(WebSocketCloseStatus.MessageTooBig, "frame too big");
                                return new SessionEnd(null, null, new WebSocketException($"A server frame exceeded {owner._options.MaxReceiveFrameBytes} bytes."), false);
                            }

                            var larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, owner._options.MaxReceiveFrameBytes));
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
                        owner.OnFrame(this, buffer.AsSpan(0, count));
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
}

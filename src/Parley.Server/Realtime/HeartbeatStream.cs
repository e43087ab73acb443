using System.Runtime.CompilerServices;

namespace Parley.Server.Realtime;

/// <summary>
/// The upgraded connection under a server WebSocket, with what the heartbeat needs and .NET's WebSocket does not
/// offer: when the peer was last heard from, and a way to send a ping frame. .NET's WebSocket writes every frame
/// with a single write (header and payload together), its writes serialized by its own lock; this stream's lock
/// only keeps a ping from being written between two of those writes' bytes. <c>HeartbeatStreamTests</c> checks
/// the one-write-per-frame behaviour this relies on.
/// </summary>
internal sealed class HeartbeatStream(Stream inner, TimeProvider time) : Stream
{
    /// <summary>FIN + ping, unmasked (server to client), no payload: the peer answers with an empty pong.</summary>
    private static readonly byte[] PingFrame = [0x89, 0x00];

    private const int OpcodeBits = 0x0F;
    private const int CloseOpcode = 0x08;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private bool _closeWritten; // guarded by _writeLock: no frame may follow a close frame
    private long _lastReadStarted = time.GetTimestamp();
    private volatile bool _disposed;

    // The heartbeat wheel's bookkeeping, guarded by its lock (Heartbeats): an intrusive list per slot, so that a
    // socket is added and removed without allocating and without a search.
    internal HeartbeatStream? Previous;
    internal HeartbeatStream? Next;
    internal int Slot = -1;
    internal long PingSentAt;
    internal IHeartbeatOwner? Owner;

    /// <summary>
    /// When the WebSocket last asked for more bytes (a <see cref="TimeProvider.GetTimestamp"/>). It asks again as
    /// soon as it has consumed what arrived, so a read started after a ping means the peer sent something since.
    /// </summary>
    public long LastReadStartedAt => Volatile.Read(ref _lastReadStarted);

    public override bool CanRead => inner.CanRead;

    public override bool CanWrite => inner.CanWrite;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Volatile.Write(ref _lastReadStarted, time.GetTimestamp());
        return inner.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        Volatile.Write(ref _lastReadStarted, time.GetTimestamp());
        return inner.Read(buffer, offset, count);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!buffer.IsEmpty && (buffer.Span[0] & OpcodeBits) == CloseOpcode)
            {
                _closeWritten = true;
            }

            await inner.WriteAsync(buffer, cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await inner.FlushAsync(cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>
    /// Writes a ping frame after the frame being written, if any. False when none was written: the socket sent its
    /// close frame, is disposed, or the write failed (the connection's own loops notice a broken socket).
    /// </summary>
    public async Task<bool> TryPingAsync()
    {
        // Not cancellable: a write that never ends is aborted by the send loop's deadline, which frees the lock.
        await _writeLock.WaitAsync(CancellationToken.None);
        try
        {
            if (_closeWritten || _disposed)
            {
                return false;
            }

            await inner.WriteAsync(PingFrame);
            await inner.FlushAsync();
            return true;
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            return false;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Waits for a ping being written (if any) and lets no other start: for a stream whose connection is handed back
    /// after the socket ended. Bounded: a write that never ends is cut short by disposing the stream under it.
    /// </summary>
    public async Task StopWritesAsync()
    {
        _disposed = true;
        if (await _writeLock.WaitAsync(TimeSpan.FromSeconds(5)))
        {
            _writeLock.Release();
        }
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _disposed = true;
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        _disposed = true;
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}

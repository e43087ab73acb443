using System.Net.WebSockets;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Realtime;

namespace Parley.Server.Tests;

/// <summary>
/// The heartbeat on a fake clock: one wheel pings the sockets that were silent for the interval, keeps those that
/// answer, aborts those that do not, and leaves active sockets alone. And the stream under the WebSocket: a ping
/// never lands inside a frame or after a close frame.
/// </summary>
[Trait("Store", "Independent")]
public sealed class HeartbeatsTests : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(25);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly Heartbeats _heartbeats;

    public HeartbeatsTests()
    {
        _heartbeats = new Heartbeats(
            Options.Create(new RealtimeOptions { HeartbeatInterval = Interval, HeartbeatTimeout = Timeout }), _time);
    }

    public void Dispose() => _heartbeats.Dispose();

    [Fact]
    public void SilentSocket_PingedOnceItWasSilentForTheInterval_NotBefore()
    {
        var (socket, wire, owner) = Register();

        _time.Advance(Interval - TimeSpan.FromSeconds(1));
        Assert.Empty(wire.Pings);

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Single(wire.Pings);
        Assert.Equal(0, owner.TimedOut);
        GC.KeepAlive(socket);
    }

    [Fact]
    public async Task AnsweredPing_SocketKept_NextPingAfterAnotherSilentInterval()
    {
        var (socket, wire, owner) = Register();
        _time.Advance(Interval + TimeSpan.FromSeconds(1));
        Assert.Single(wire.Pings);

        // The pong arrives: the WebSocket reads it and asks for more.
        _time.Advance(TimeSpan.FromSeconds(1));
        await Heard(socket);

        _time.Advance(Timeout + TimeSpan.FromSeconds(1));
        Assert.Equal(0, owner.TimedOut);
        Assert.Single(wire.Pings);

        _time.Advance(Interval - Timeout);
        Assert.Equal(2, wire.Pings.Count);
        Assert.Equal(0, owner.TimedOut);
        Assert.Equal(1, _heartbeats.Count);
    }

    [Fact]
    public void UnansweredPing_AbortedOnceAfterTheTimeout_AndForgotten()
    {
        var (_, wire, owner) = Register();
        _time.Advance(Interval + TimeSpan.FromSeconds(1));
        Assert.Single(wire.Pings);

        _time.Advance(Timeout - TimeSpan.FromSeconds(2));
        Assert.Equal(0, owner.TimedOut);

        _time.Advance(TimeSpan.FromSeconds(3));
        Assert.Equal(1, owner.TimedOut);
        Assert.Equal(0, _heartbeats.Count);

        Pass(Interval * 4);
        Assert.Equal(1, owner.TimedOut);
        Assert.Single(wire.Pings);
    }

    [Fact]
    public async Task ActiveSocket_NeverPinged()
    {
        var (socket, wire, owner) = Register();

        for (var second = 0; second < 120; second++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            if (second % 10 == 0)
            {
                await Heard(socket);
            }
        }

        Assert.Empty(wire.Pings);
        Assert.Equal(0, owner.TimedOut);
    }

    [Fact]
    public void Unregistered_NeitherPingedNorAborted_OthersStillServed()
    {
        var (gone, goneWire, goneOwner) = Register();
        var (_, stayingWire, stayingOwner) = Register();

        _heartbeats.Unregister(gone);
        _heartbeats.Unregister(gone);
        Pass(Interval + Timeout + TimeSpan.FromSeconds(2));

        Assert.Empty(goneWire.Pings);
        Assert.Equal(0, goneOwner.TimedOut);
        Assert.Single(stayingWire.Pings);
        Assert.Equal(1, stayingOwner.TimedOut);
        Assert.Equal(0, _heartbeats.Count);
    }

    [Fact]
    public void ManySockets_EachPingedOnceAndAbortedOnce()
    {
        var sockets = Enumerable.Range(0, 500).Select(_ =>
        {
            _time.Advance(TimeSpan.FromMilliseconds(37));
            return Register();
        }).ToList();

        Pass(Interval + Timeout + TimeSpan.FromSeconds(20));

        Assert.All(sockets, s =>
        {
            Assert.Single(s.Wire.Pings);
            Assert.Equal(1, s.Owner.TimedOut);
        });
        Assert.Equal(0, _heartbeats.Count);
    }

    [Fact]
    public void LateTimer_CatchesUp_PingsWhatBecameDue()
    {
        var (_, wire, _) = Register();

        // One jump over many ticks (a stalled timer): the slots in between are still looked at.
        _time.Advance(Interval * 3);

        Assert.Single(wire.Pings);
    }

    [Fact]
    public void Register_TwiceForOneStream_Refused()
    {
        var (socket, _, owner) = Register();

        Assert.Throws<InvalidOperationException>(() => _heartbeats.Register(socket, owner));
    }

    [Fact]
    public async Task Ping_WhileAFrameIsBeingWritten_WrittenAfterIt()
    {
        var wire = new Wire();
        var stream = new HeartbeatStream(wire, _time);
        var frame = new byte[] { 0x81, 0x03, (byte)'a', (byte)'b', (byte)'c' };
        wire.HoldWrites();

        var writing = stream.WriteAsync(frame, TestContext.Current.CancellationToken).AsTask();
        var ping = stream.TryPingAsync();
        await Task.Delay(50, TestContext.Current.CancellationToken);
        Assert.False(ping.IsCompleted);

        wire.ReleaseWrites();
        await writing;
        Assert.True(await ping);
        Assert.Equal([frame, [0x89, 0x00]], wire.Writes);
    }

    [Fact]
    public async Task Ping_AfterTheCloseFrame_NotWritten()
    {
        var wire = new Wire();
        var stream = new HeartbeatStream(wire, _time);
        byte[] close = [0x88, 0x02, 0x03, 0xE8];

        await stream.WriteAsync(close, TestContext.Current.CancellationToken);

        Assert.False(await stream.TryPingAsync());
        Assert.Equal([close], wire.Writes);
    }

    [Fact]
    public async Task Ping_OnADisposedStream_NotWritten()
    {
        var wire = new Wire();
        var stream = new HeartbeatStream(wire, _time);

        await stream.DisposeAsync();

        Assert.False(await stream.TryPingAsync());
        Assert.Empty(wire.Writes);
    }

    /// <summary>
    /// What the stream relies on: .NET's WebSocket writes each frame, header and payload, with one write (small,
    /// large, control frames). If a runtime update splits them, a ping could land inside a frame: this fails first.
    /// </summary>
    [Fact]
    public async Task DotNetWebSocket_WritesEachFrameWithOneWrite()
    {
        var wire = new Wire();
        using var socket = WebSocket.CreateFromStream(wire, new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
        var ct = TestContext.Current.CancellationToken;
        int[] sizes = [0, 5, 125, 126, 4096, 65_535, 65_536, 300_000];

        foreach (var size in sizes)
        {
            await socket.SendAsync(new byte[size], WebSocketMessageType.Text, endOfMessage: true, ct);
        }

        await socket.SendAsync(new byte[10], WebSocketMessageType.Binary, endOfMessage: false, ct);
        await socket.SendAsync(new byte[20], WebSocketMessageType.Binary, endOfMessage: true, ct);
        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", ct);

        Assert.Equal(sizes.Length + 3, wire.Writes.Count);
        foreach (var write in wire.Writes)
        {
            Assert.Equal(write.Length, FrameLength(write));
        }
    }

    /// <summary>Time passes second by second, as on a real clock (one big jump is a stalled timer, tested apart).</summary>
    private void Pass(TimeSpan total)
    {
        for (var passed = TimeSpan.Zero; passed < total; passed += TimeSpan.FromSeconds(1))
        {
            _time.Advance(TimeSpan.FromSeconds(1));
        }
    }

    private (HeartbeatStream Socket, Wire Wire, Owner Owner) Register()
    {
        var wire = new Wire();
        var stream = new HeartbeatStream(wire, _time);
        var owner = new Owner();
        _heartbeats.Register(stream, owner);
        return (stream, wire, owner);
    }

    /// <summary>The WebSocket asks for more bytes: what the peer sent has been read.</summary>
    private static async Task Heard(HeartbeatStream socket) =>
        Assert.Equal(0, await socket.ReadAsync(new byte[16], TestContext.Current.CancellationToken));

    /// <summary>Header plus payload length of one unmasked frame (server to client).</summary>
    private static int FrameLength(byte[] frame)
    {
        var length = frame[1] & 0x7F;
        return length switch
        {
            126 => 4 + ((frame[2] << 8) | frame[3]),
            127 => 10 + (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(frame.AsSpan(2)),
            _ => 2 + length,
        };
    }

    private sealed class Owner : IHeartbeatOwner
    {
        public int TimedOut { get; private set; }

        public void HeartbeatTimedOut() => TimedOut++;
    }

    /// <summary>The connection under the stream: records each write; reads return at once with nothing.</summary>
    private sealed class Wire : Stream
    {
        private TaskCompletionSource? _held;

        public List<byte[]> Writes { get; } = [];

        public List<byte[]> Pings => [.. Writes.Where(w => w is [0x89, 0x00])];

        public void HoldWrites() => _held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        public void ReleaseWrites() => _held?.TrySetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var copy = buffer.ToArray();
            if (_held is { } held)
            {
                await held.Task;
            }

            lock (Writes)
            {
                Writes.Add(copy);
            }
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(0);

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => 0;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    }
}

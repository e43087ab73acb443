using System.Net.WebSockets;
using Microsoft.Extensions.Logging.Abstractions;
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
        _heartbeats = Create(_time);
    }

    private static Heartbeats Create(TimeProvider time) =>
        new(Options.Create(new RealtimeOptions { HeartbeatInterval = Interval, HeartbeatTimeout = Timeout }), time, NullLogger<Heartbeats>.Instance);

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
    public void StalledTimer_OneTickCatchesUp_PingsAndAbortsWhatBecameDue()
    {
        // A clock whose timer never fires: each Tick below is the first after a stall of many ticks.
        var clock = new StalledClock();
        using var heartbeats = Create(clock);
        var early = new HeartbeatStream(new Wire(), clock);
        var earlyOwner = new Owner();
        var lateOwner = new Owner();
        heartbeats.Register(early, earlyOwner);
        clock.Now += Interval + TimeSpan.FromSeconds(1);
        var late = new HeartbeatStream(new Wire(), clock);
        heartbeats.Register(late, lateOwner);
        heartbeats.Tick();

        // Beyond a whole turn of the wheel: the early one was pinged long ago (aborted now), the late one not yet (pinged now).
        clock.Now += Interval * 3;
        heartbeats.Tick();

        Assert.Equal(1, earlyOwner.TimedOut);
        Assert.Equal(0, lateOwner.TimedOut);
        Assert.Equal(1, heartbeats.Count);

        clock.Now += Timeout + TimeSpan.FromSeconds(1);
        heartbeats.Tick();
        Assert.Equal(1, lateOwner.TimedOut);
        Assert.Equal(0, heartbeats.Count);
    }

    [Fact]
    public async Task UnansweredPing_WhileTheConnectionHandlesAFrame_NotAbortedUntilItWaitsForThePeerAgain()
    {
        var (socket, wire, owner) = Register();
        Pass(Interval + TimeSpan.FromSeconds(1));
        Assert.Single(wire.Pings);

        // A slow store holds the connection in a frame: the pong may be waiting unread.
        owner.AwaitsPeer = false;
        Pass(Timeout * 3);
        Assert.Equal(0, owner.TimedOut);

        // It reads again: what it reads counts as the answer, and the heartbeat starts over.
        owner.AwaitsPeer = true;
        await Heard(socket);
        Pass(Interval - TimeSpan.FromSeconds(2));
        Assert.Equal(0, owner.TimedOut);
        Assert.Single(wire.Pings);

        // Silent again, and now waiting for the peer: pinged, then aborted.
        Pass(Timeout + TimeSpan.FromSeconds(5));
        Assert.Equal(2, wire.Pings.Count);
        Assert.Equal(1, owner.TimedOut);
    }

    [Fact]
    public void UnansweredPing_ConnectionBusyAtTheTimeout_AbortedSoonAfterItWaitsAgainWithNothingRead()
    {
        var (_, wire, owner) = Register();
        Pass(Interval + TimeSpan.FromSeconds(1));
        owner.AwaitsPeer = false;
        Pass(Timeout + TimeSpan.FromSeconds(1));
        Assert.Equal(0, owner.TimedOut);

        owner.AwaitsPeer = true;
        Pass(Timeout / 4 + TimeSpan.FromSeconds(1));

        Assert.Equal(1, owner.TimedOut);
        Assert.Single(wire.Pings);
    }

    [Fact]
    public void Abort_Throws_TheTickGoesOnForTheOthers()
    {
        var (_, _, failing) = Register();
        var (_, _, other) = Register();
        failing.Throws = true;

        Pass(Interval + Timeout + TimeSpan.FromSeconds(2));

        Assert.Equal(1, failing.TimedOut);
        Assert.Equal(1, other.TimedOut);
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

    /// <summary>
    /// A socket accepted below the request pipeline hands its connection back to Kestrel when it ends, which then
    /// completes the connection's pipe: a ping still being written must finish first, and none may start after.
    /// </summary>
    [Fact]
    public async Task StopWrites_WhileAPingIsBeingWritten_WaitsForItAndNoPingFollows()
    {
        var wire = new Wire();
        var stream = new HeartbeatStream(wire, _time);
        wire.HoldWrites();
        var ping = stream.TryPingAsync();

        var stopping = stream.StopWritesAsync();
        await Task.Delay(50, TestContext.Current.CancellationToken);
        Assert.False(stopping.IsCompleted);

        wire.ReleaseWrites();
        await stopping.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        Assert.True(ping.IsCompleted);
        Assert.True(await ping);
        Assert.False(await stream.TryPingAsync());
        Assert.Single(wire.Pings);
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

    /// <summary>Time passes second by second, as the ticks of a running timer see it.</summary>
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

        public bool AwaitsPeer { get; set; } = true;

        public bool Throws { get; set; }

        public void HeartbeatTimedOut()
        {
            TimedOut++;
            if (Throws)
            {
                throw new InvalidOperationException("the owner failed");
            }
        }
    }

    /// <summary>A clock moved by hand whose timers never fire (a stalled timer queue).</summary>
    private sealed class StalledClock : TimeProvider
    {
        public TimeSpan Now { get; set; } = TimeSpan.FromHours(1);

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Now.Ticks;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => new NeverFires();

        private sealed class NeverFires : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
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

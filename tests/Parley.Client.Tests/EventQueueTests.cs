using Parley.Client.Realtime;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>The bounded event queue's policy: producers wait for the reader at the limit, nothing is dropped, and a waiting send lifts the wait.</summary>
[Trait("Store", "Independent")]
public sealed class EventQueueTests
{
    private static readonly TimeSpan Timeout = FakeParley.Timeout;

    private bool _mustKeepReading;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private EventQueue Create(int capacity) => new(capacity, () => Volatile.Read(ref _mustKeepReading));

    private static DeliveryItem Cursor(int i) => new(null, "k" + i);

    [Fact]
    public async Task WaitForRoom_BelowTheCapacity_ReturnsAtOnce()
    {
        var queue = Create(2);
        queue.Writer.TryWrite(Cursor(1));

        await queue.WaitForRoomAsync(Ct).AsTask().WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task WaitForRoom_Full_WaitsUntilTheReaderTakesAnItem()
    {
        var queue = Create(2);
        queue.Writer.TryWrite(Cursor(1));
        queue.Writer.TryWrite(Cursor(2));

        var waiting = queue.WaitForRoomAsync(Ct).AsTask();
        Assert.False(waiting.IsCompleted);

        Assert.True(queue.TryRead(out var first));
        Assert.Equal("k1", first.Cursor);
        await waiting.WaitAsync(Timeout, Ct);
    }

    [Fact]
    public void Writer_BeyondTheCapacity_NeitherFailsNorDrops()
    {
        // The bound is kept by producers waiting before a step; a step that started with room always completes.
        var queue = Create(1);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(queue.Writer.TryWrite(Cursor(i)));
        }

        Assert.Equal(5, queue.Count);
        var read = new List<string?>();
        while (queue.TryRead(out var item))
        {
            read.Add(item.Cursor);
        }

        Assert.Equal(["k0", "k1", "k2", "k3", "k4"], read);
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public async Task WaitForRoom_FullWhileTheOwnerMustKeepReading_ReturnsAtOnce()
    {
        var queue = Create(1);
        queue.Writer.TryWrite(Cursor(1));
        _mustKeepReading = true;

        await queue.WaitForRoomAsync(Ct).AsTask().WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task WaitForRoom_OwnerMustKeepReadingOnceWaiting_WakeReleasesIt()
    {
        var queue = Create(1);
        queue.Writer.TryWrite(Cursor(1));
        var waiting = queue.WaitForRoomAsync(Ct).AsTask();
        Assert.False(waiting.IsCompleted);

        // A send starts waiting for its acknowledgement, which comes on the socket: the socket must be read on.
        Volatile.Write(ref _mustKeepReading, true);
        queue.Wake();

        await waiting.WaitAsync(Timeout, Ct);
        Assert.Equal(1, queue.Count);
    }

    [Fact]
    public async Task WaitForRoom_WokenWhileStillFull_KeepsWaiting()
    {
        var queue = Create(1);
        queue.Writer.TryWrite(Cursor(1));
        var waiting = queue.WaitForRoomAsync(Ct).AsTask();

        queue.Wake();

        Assert.NotSame(waiting, await Task.WhenAny(waiting, Task.Delay(200, Ct)));
        queue.TryRead(out _);
        await waiting.WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task WaitForRoom_Cancelled_Throws()
    {
        var queue = Create(1);
        queue.Writer.TryWrite(Cursor(1));
        using var cts = new CancellationTokenSource();

        var waiting = queue.WaitForRoomAsync(cts.Token).AsTask();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(Timeout, Ct));
    }

    [Fact]
    public async Task Complete_WhileAProducerWaits_ReleasesItAndKeepsWhatWasWritten()
    {
        var queue = Create(1);
        queue.Writer.TryWrite(Cursor(1));
        var waiting = queue.WaitForRoomAsync(Ct).AsTask();

        queue.Complete();

        await waiting.WaitAsync(Timeout, Ct);
        Assert.True(queue.TryRead(out var item));
        Assert.Equal("k1", item.Cursor);
        Assert.False(await queue.WaitToReadAsync(Ct).AsTask().WaitAsync(Timeout, Ct));
    }
}

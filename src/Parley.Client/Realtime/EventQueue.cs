using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;

namespace Parley.Client.Realtime;

/// <summary>
/// The ordered stream between the delivery rules and the app's <see cref="ParleyRealtime.ReadEventsAsync"/> loop,
/// bounded by back-pressure: a producer (the socket's receive loop, the gap filler) waits in
/// <see cref="WaitForRoomAsync"/> before a step that adds items while <see cref="Capacity"/> items are unread, so
/// an app that stops reading stops the socket from being read instead of having it drained into memory. Nothing
/// is ever dropped.
/// </summary>
/// <remarks>
/// <para>
/// The bound is soft by design: items are written under the delivery lock, in delivery order, by
/// <see cref="DeliveryState"/>, and such a write never waits or fails (while the queue is open). A step that
/// started with room finishes, so the queue may exceed the capacity by what one step adds: one frame's event and
/// the events held back behind a gap it fills, or one sync page.
/// </para>
/// <para>
/// One exception keeps an app from deadlocking itself: while <c>mustKeepReading</c> holds (a
/// <see cref="ParleyRealtime.SendAsync"/> waits for its acknowledgement) producers do not wait. An app may await
/// a send inside its event loop; the acknowledgement comes on the socket behind events it has not read yet, and
/// waiting for the app would then wait forever. The owner calls <see cref="Wake"/> when the predicate may have
/// turned true.
/// </para>
/// <para>
/// Concurrency: one reader (the app's loop); producers under the delivery lock. <c>_lock</c> guards only
/// <c>_room</c>, the wake-up of waiting producers, and is never held while calling out.
/// </para>
/// </remarks>
internal sealed class EventQueue(int capacity, Func<bool> mustKeepReading)
{
    private readonly Channel<DeliveryItem> _items = Channel.CreateUnbounded<DeliveryItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _lock = new();
    private TaskCompletionSource? _room;
    private bool _completed;
    private int _count;

    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));

    /// <summary>Where <see cref="DeliveryState"/> writes (under the delivery lock); a write never waits.</summary>
    public ChannelWriter<DeliveryItem> Writer => field ??= new CountingWriter(this);

    /// <summary>Items not read yet.</summary>
    public int Count => Volatile.Read(ref _count);

    public ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken) => _items.Reader.WaitToReadAsync(cancellationToken);

    public bool TryRead([MaybeNullWhen(false)] out DeliveryItem item)
    {
        if (!_items.Reader.TryRead(out item))
        {
            return false;
        }

        Interlocked.Decrement(ref _count);
        TaskCompletionSource? room = null;
        lock (_lock)
        {
            // Under the lock: a producer that saw the queue full registered _room before this look, or sees
            // the lower count after it.
            if (_room is not null && Count < Capacity)
            {
                room = _room;
                _room = null;
            }
        }

        room?.TrySetResult();
        return true;
    }

    /// <summary>
    /// Returns at once while fewer than <see cref="Capacity"/> items are unread (or while <c>mustKeepReading</c>
    /// holds, or once the queue is complete); otherwise waits until the reader takes one.
    /// </summary>
    public async ValueTask WaitForRoomAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            TaskCompletionSource room;
            lock (_lock)
            {
                if (_completed || Count < Capacity)
                {
                    return;
                }

                room = _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            // Outside the lock (the predicate takes the owner's locks). If it turns true after this look, the
            // owner's Wake completes `room`, registered before.
            if (mustKeepReading())
            {
                return;
            }

            await room.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Makes waiting producers look again (the owner's predicate may have changed).</summary>
    public void Wake()
    {
        TaskCompletionSource? room;
        lock (_lock)
        {
            room = _room;
            _room = null;
        }

        room?.TrySetResult();
    }

    /// <summary>Ends the stream (after what was written), with <paramref name="error"/> when the connection failed; producers stop waiting.</summary>
    public void Complete(Exception? error = null)
    {
        lock (_lock)
        {
            _completed = true;
        }

        _items.Writer.TryComplete(error);
        Wake();
    }

    /// <summary>Counts what is written (counted first, so the count never runs below what the reader can take).</summary>
    private sealed class CountingWriter(EventQueue owner) : ChannelWriter<DeliveryItem>
    {
        public override bool TryWrite(DeliveryItem item)
        {
            Interlocked.Increment(ref owner._count);
            if (owner._items.Writer.TryWrite(item))
            {
                return true;
            }

            Interlocked.Decrement(ref owner._count);
            return false;
        }

        public override ValueTask<bool> WaitToWriteAsync(CancellationToken cancellationToken = default) =>
            owner._items.Writer.WaitToWriteAsync(cancellationToken);

        public override bool TryComplete(Exception? error = null) => owner._items.Writer.TryComplete(error);
    }
}

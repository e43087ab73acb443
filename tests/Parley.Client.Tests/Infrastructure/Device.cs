namespace Parley.Client.Tests.Infrastructure;

/// <summary>One device of a user against the real server: a REST client, its realtime connection and the event stream it reads.</summary>
internal sealed class Device : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly IAsyncEnumerator<ParleyEvent> _events;
    private Task<bool>? _pending;

    private Device(ParleyClient client, ParleyRealtime realtime)
    {
        Client = client;
        Realtime = realtime;
        _events = realtime.ReadEventsAsync(TestContext.Current.CancellationToken).GetAsyncEnumerator(TestContext.Current.CancellationToken);
    }

    public ParleyClient Client { get; }

    public ParleyRealtime Realtime { get; }

    /// <summary>Every event this device's loop consumed, in order.</summary>
    public List<ParleyEvent> Seen { get; } = [];

    public static async Task<Device> ConnectAsync(
        ServerFactory server, string userId, string deviceId, ICursorStore? store = null, Uri? baseAddress = null,
        Func<CancellationToken, ValueTask<string>>? tokens = null)
    {
        var client = tokens is null
            ? server.Client(userId, deviceId, baseAddress)
            : new ParleyClient(baseAddress ?? server.BaseAddress, ParleyCredentials.Bearer(tokens));
        var realtime = new ParleyRealtime(client, new ParleyRealtimeOptions
        {
            DeviceId = deviceId,
            CursorStore = store ?? new InMemoryCursorStore(),
            InitialReconnectDelay = TimeSpan.FromMilliseconds(50),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
            AckDelay = TimeSpan.FromMilliseconds(20),
        });
        await realtime.ConnectAsync(TestContext.Current.CancellationToken).WaitAsync(Timeout, TestContext.Current.CancellationToken);
        return new Device(client, realtime);
    }

    /// <summary>The next consumed event of type <typeparamref name="T"/> that matches (others are consumed and kept in <see cref="Seen"/>).</summary>
    public async Task<T> NextAsync<T>(Func<T, bool>? match = null)
        where T : ParleyEvent
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(Timeout);
        while (true)
        {
            bool moved;
            try
            {
                var next = _pending ?? _events.MoveNextAsync().AsTask();
                _pending = null;
                moved = await next.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"No {typeof(T).Name} arrived; seen: {string.Join(", ", Seen.Select(e => e.GetType().Name))}");
            }

            Assert.True(moved, "the event stream ended");
            Seen.Add(_events.Current);
            if (_events.Current is T e && (match is null || match(e)))
            {
                return e;
            }
        }
    }

    /// <summary>The next <paramref name="count"/> messages created in <paramref name="conversationId"/>.</summary>
    public async Task<List<Message>> MessagesAsync(Guid conversationId, int count)
    {
        var messages = new List<Message>();
        while (messages.Count < count)
        {
            messages.Add((await NextAsync<MessageCreatedEvent>(e => e.ConversationId == conversationId)).Message);
        }

        return messages;
    }

    /// <summary>Starts waiting for the next event, so that the last one counts as consumed (acknowledged, checkpointed).</summary>
    public Task<bool> ConsumeCurrentAsync() => _pending = _events.MoveNextAsync().AsTask();

    public async ValueTask DisposeAsync()
    {
        await Realtime.DisposeAsync().AsTask().WaitAsync(Timeout);

        // Disposing ends the stream, which completes a pending MoveNextAsync; only then may the enumerator be disposed.
        if (_pending is not null)
        {
            await _pending.WaitAsync(Timeout);
        }

        await _events.DisposeAsync();
        Client.Dispose();
    }
}

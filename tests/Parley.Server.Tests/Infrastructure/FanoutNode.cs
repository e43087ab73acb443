using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Parley.Server.Fanout;
using Parley.Server.Realtime;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// One instance's fan-out for tests: a <see cref="ConnectionHub"/>, the fan-out under test, and devices (connections
/// on in-memory sockets) that record the frames written to them.
/// </summary>
internal sealed class FanoutNode : IAsyncDisposable
{
    private readonly List<Device> _devices = [];

    private FanoutNode(ConnectionHub hub, IFanout fanout)
    {
        Hub = hub;
        Fanout = fanout;
    }

    public ConnectionHub Hub { get; }

    public IFanout Fanout { get; }

    public static FanoutNode InProcess()
    {
        var hub = new ConnectionHub(TestMetrics.Unobserved, TimeProvider.System);
        return new FanoutNode(hub, new InProcessFanout(hub, TimeProvider.System));
    }

    /// <summary>A started Redis fan-out on <paramref name="redis"/> (its own instance id).</summary>
    public static async Task<FanoutNode> RedisAsync(string redis, IGapFiller? filler = null, Action<RedisFanoutOptions>? configure = null)
    {
        var hub = new ConnectionHub(TestMetrics.Unobserved, TimeProvider.System);
        var options = new RedisFanoutOptions { InstanceTtl = TimeSpan.FromSeconds(3), OrderHold = TimeSpan.FromMilliseconds(100) };
        configure?.Invoke(options);
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:Redis"] = redis }).Build();
        var fanout = new RedisFanout(
            hub, filler ?? new NoGaps(), Options.Create(new FanoutOptions { Provider = FanoutProvider.Redis, Redis = options }), configuration, TestMetrics.Unobserved, TimeProvider.System, NullLoggerFactory.Instance);
        await fanout.StartAsync(CancellationToken.None);
        return new FanoutNode(hub, fanout);
    }

    public RedisFanout Redis => (RedisFanout)Fanout;

    /// <summary>Connects a device of the user: registered in the hub, subscribed, its send loop running.</summary>
    public async Task<Device> ConnectAsync(string userId, bool blocked = false)
    {
        var socket = new FakeWebSocket();
        if (blocked)
        {
            socket.BlockSends();
        }

        var options = new RealtimeOptions { SendQueueCapacity = 4096 };
        var connection = new Connection(Guid.NewGuid().ToString("N"), userId, "device", acks: false, socket, options, 1 << 20, NullLogger.Instance, TestMetrics.Unobserved);
        var device = new Device(this, socket, connection, Hub);
        Hub.Add(connection);
        await Fanout.SubscribeAsync(userId, CancellationToken.None);
        device.Start();
        _devices.Add(device);
        return device;
    }

    public Task PublishAsync(IReadOnlyList<string> userIds, OutboundFrame frame, string? exceptUserId = null) =>
        Fanout.PublishAsync(new FanoutMessage(userIds, frame, exceptUserId), CancellationToken.None).AsTask();

    public async ValueTask DisposeAsync()
    {
        foreach (var device in _devices)
        {
            await device.DisconnectAsync();
        }

        if (Fanout is RedisFanout redis)
        {
            await redis.StopAsync(CancellationToken.None);
            await redis.DisposeAsync();
        }
    }

    /// <summary>A text frame whose payload carries a label (and, when sequenced, its conversation and seq).</summary>
    public static OutboundFrame Frame(string label, Guid? conversationId = null, long seq = 0, int padding = 0) =>
        new(
            Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "test", payload = new { label, conversation_id = conversationId, seq, padding = new string('x', padding) } })),
            "test",
            conversationId,
            seq);

    public static string Label(string frame)
    {
        using var json = JsonDocument.Parse(frame);
        return json.RootElement.GetProperty("payload").GetProperty("label").GetString()!;
    }

    public sealed class Device(FanoutNode? node, FakeWebSocket socket, Connection connection, ConnectionHub hub)
    {
        private Task _run = Task.CompletedTask;
        private bool _gone;

        public FakeWebSocket Socket => socket;

        public IReadOnlyList<string> Labels => [.. socket.Sent.Select(Label)];

        /// <summary>A started device registered in <paramref name="hub"/> only (no fan-out).</summary>
        public static Device Open(ConnectionHub hub, string userId)
        {
            var socket = new FakeWebSocket();
            var connection = new Connection(
                Guid.NewGuid().ToString("N"), userId, "device", acks: false, socket, new RealtimeOptions(), 1 << 20, NullLogger.Instance, TestMetrics.Unobserved);
            var device = new Device(null, socket, connection, hub);
            hub.Add(connection);
            device.Start();
            return device;
        }

        public void Start() => _run = connection.RunAsync((_, _, _, _) => Task.CompletedTask, (_, _) => { }, CancellationToken.None);

        public Task WaitForAsync(int frames) => socket.WaitForSentAsync(frames, TimeSpan.FromSeconds(10));

        public async Task DisconnectAsync()
        {
            if (_gone)
            {
                return;
            }

            _gone = true;
            hub.Remove(connection);
            if (node is not null)
            {
                await node.Fanout.UnsubscribeAsync(connection.UserId);
            }
            socket.ReleaseSends();
            connection.RequestClose(1000, "");
            socket.ReceiveClose(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure);
            await _run.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            connection.Dispose();
            socket.Dispose();
        }
    }

    private sealed class NoGaps : IGapFiller
    {
        public Task<IReadOnlyList<FanoutPart>> ReadGapAsync(
            Guid conversationId, long afterSeq, long uptoSeq, IReadOnlyCollection<string> userIds, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<FanoutPart>>([]);

        public Task<IReadOnlyDictionary<Guid, long>> ReadLastSeqsAsync(string userId, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyDictionary<Guid, long>>(new Dictionary<Guid, long>());

        public Task<IReadOnlyList<OutboundFrame>> ReadWatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<OutboundFrame>>([]);

        public void RecheckCursors()
        {
        }
    }
}

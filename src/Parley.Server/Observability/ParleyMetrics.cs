using System.Diagnostics.Metrics;

namespace Parley.Server.Observability;

/// <summary>
/// Parley's own instruments, all in the meter <c>Parley.Server</c> (docs/operations.md lists each with its Prometheus
/// name). The recording methods sit on hot paths (every frame in and out): they take constant tag values, build
/// no arrays and take no lock, and an instrument nobody listens to costs one branch.
/// <para>
/// Values that only matter when someone looks (open connections, queued frames, the sequencer's lag) are observed
/// at collection time from sources their owners register (<see cref="ObserveConnections"/>), or from the last value
/// the owner reported (<see cref="RecordSequencerPass"/>): a scrape never queries the database.
/// </para>
/// </summary>
internal sealed class ParleyMetrics
{
    public const string MeterName = "Parley.Server";

    /// <summary>Bucket bounds in seconds for latencies expected in milliseconds: 0.5 ms to 10 s.</summary>
    public static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>Bucket bounds for the writes a store commits together (group commit).</summary>
    public static readonly long[] BatchSizeBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

    private readonly TimeProvider _time;
    private readonly Counter<long> _connectionsOpened;
    private readonly Counter<long> _connectionsClosed;
    private readonly Counter<long> _slowConsumerCloses;
    private readonly Counter<long> _framesIn;
    private readonly Counter<long> _framesOut;
    private readonly Histogram<double> _sendToSocket;
    private readonly Counter<long> _positionsAssigned;
    private readonly Histogram<double> _commitDuration;
    private readonly Histogram<long> _commitBatchSize;
    private readonly Counter<double> _commitCpu;
    private readonly Histogram<double> _storeOperationDuration;
    private readonly Counter<long> _storeErrors;
    private readonly Counter<long> _fanoutPublished;
    private readonly Counter<long> _fanoutReceived;
    private readonly Counter<long> _fanoutDropped;
    private readonly Counter<long> _fanoutGaps;
    private readonly Counter<long> _fanoutLate;
    private Func<long>? _fanoutQueued;
    private readonly Counter<long> _eventsPublished;
    private readonly Counter<long> _eventPublishFailures;
    private readonly Counter<long> _eventDeadLetters;
    private Func<IReadOnlyList<EventSinkLag>>? _eventSinks;

    private Func<int>? _openConnections;
    private Func<long>? _queuedFrames;

    // Timestamp (TimeProvider.GetTimestamp) of the last sequencer pass that left nothing to position; starts at
    // construction, so a sequencer that never catches up (or never runs) shows a growing lag.
    private long _sequencerCaughtUpAt;

    public ParleyMetrics(IMeterFactory meterFactory, TimeProvider time)
    {
        _time = time;
        _sequencerCaughtUpAt = time.GetTimestamp();
        var meter = meterFactory.Create(MeterName);

        meter.CreateObservableUpDownCounter(
            "parley.connections.open", () => _openConnections?.Invoke() ?? 0, "{connection}", "WebSocket connections open on this instance.");
        _connectionsOpened = meter.CreateCounter<long>("parley.connections.opened", "{connection}", "WebSocket connections accepted.");
        _connectionsClosed = meter.CreateCounter<long>(
            "parley.connections.closed", "{connection}", "WebSocket connections ended, by reason (tag reason).");
        _slowConsumerCloses = meter.CreateCounter<long>(
            "parley.connections.slow_consumer_closes", "{connection}", "Connections closed with 4001 because their send queue was full.");
        _framesIn = meter.CreateCounter<long>("parley.frames.in", "{frame}", "Client frames received, by frame type (tag type).");
        _framesOut = meter.CreateCounter<long>("parley.frames.out", "{frame}", "Server frames written to sockets, by frame type (tag type).");
        _sendToSocket = meter.CreateHistogram<double>(
            "parley.send_to_socket.duration",
            "s",
            "From the broadcaster handing a frame to the fan-out until the frame was written to a socket (once per socket).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        meter.CreateObservableGauge(
            "parley.outbound.queue.depth", () => _queuedFrames?.Invoke() ?? 0, "{frame}", "Frames waiting in the send queues of all sockets of this instance.");
        meter.CreateObservableGauge(
            "parley.stream.sequencer.lag",
            () => _time.GetElapsedTime(Volatile.Read(ref _sequencerCaughtUpAt)).TotalSeconds,
            "s",
            "Time since this instance's stream sequencer last left no committed event without a stream position.");
        _positionsAssigned = meter.CreateCounter<long>(
            "parley.stream.positions.assigned", "{event}", "Committed events given a stream position by this instance's sequencer.");
        _commitDuration = meter.CreateHistogram<double>(
            "parley.store.commit.duration",
            "s",
            "Duration of one store commit (a transaction, or one group of writes committed together), by store (tag store).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _commitBatchSize = meter.CreateHistogram<long>(
            "parley.store.commit.batch_size",
            "{write}",
            "Writes committed together in one store commit, by store (tag store).",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = BatchSizeBuckets });
        _commitCpu = meter.CreateCounter<double>(
            "parley.store.commit.cpu",
            "s",
            "CPU time the committing thread used over the commits of parley.store.commit.duration, where the store measures it "
            + "(SQLite on 64-bit Linux), by store (tag store): the rest of that duration was spent waiting, for the disk's sync or a core.");
        _storeOperationDuration = meter.CreateHistogram<double>(
            "parley.store.operation.duration",
            "s",
            "Duration of one store operation, by operation (tag operation); failed ones included.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _storeErrors = meter.CreateCounter<long>("parley.store.errors", "{error}", "Store operations that failed, by operation (tag operation).");
        _fanoutPublished = meter.CreateCounter<long>(
            "parley.fanout.published", "{event}", "Events this instance published to other instances (Redis fan-out; one per event, whatever the recipients).");
        _fanoutReceived = meter.CreateCounter<long>("parley.fanout.received", "{event}", "Events this instance received from other instances (Redis fan-out).");
        _fanoutDropped = meter.CreateCounter<long>(
            "parley.fanout.dropped",
            "{event}",
            "Events not carried to other instances, by reason (tag reason: queue_full, redis_unavailable, bad_envelope); devices recover them through cursors.");
        _fanoutGaps = meter.CreateCounter<long>(
            "parley.fanout.gaps", "{gap}", "Missing predecessors the order gate stopped waiting for, by outcome (tag outcome: filled from the store, skipped).");
        _fanoutLate = meter.CreateCounter<long>("parley.fanout.late", "{event}", "Events that reached the order gate after a later seq of their conversation.");
        meter.CreateObservableGauge(
            "parley.fanout.queue.depth", () => _fanoutQueued?.Invoke() ?? 0, "{event}", "Events waiting to be published to other instances.");
        meter.CreateObservableGauge(
            "parley.events.backlog",
            () => (_eventSinks?.Invoke() ?? []).Select(s => new Measurement<long>(s.Backlog, new KeyValuePair<string, object?>("sink", s.Sink))),
            "{record}",
            "Events and receipts committed and positioned but not yet published to the sink (tag sink), as this instance last measured.");
        meter.CreateObservableGauge(
            "parley.events.backlog.age",
            () => (_eventSinks?.Invoke() ?? []).Select(s => new Measurement<double>(s.AgeSeconds, new KeyValuePair<string, object?>("sink", s.Sink))),
            "s",
            "Age of the oldest event or receipt waiting for the sink (tag sink); 0 when none waits.");
        _eventsPublished = meter.CreateCounter<long>("parley.events.published", "{record}", "Records this instance published, by sink (tag sink).");
        _eventPublishFailures = meter.CreateCounter<long>(
            "parley.events.publish_failures", "{batch}", "Batches a sink did not acknowledge (published again later), by sink (tag sink).");
        _eventDeadLetters = meter.CreateCounter<long>(
            "parley.events.dead_letters", "{record}", "Records a sink gave up on and wrote to event_dead_letters, by sink (tag sink).");
    }

    /// <summary>The fan-out's publish queue length, read at collection time (registered by the Redis fan-out).</summary>
    public void ObserveFanoutQueue(Func<long> queued) => _fanoutQueued = queued;

    public void FanoutPublished() => _fanoutPublished.Add(1);

    public void FanoutReceived() => _fanoutReceived.Add(1);

    /// <summary>An event was not carried to other instances; <paramref name="reason"/> is one of <see cref="FanoutDropReasons"/>.</summary>
    public void FanoutDropped(string reason) => _fanoutDropped.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void FanoutGap(bool filled) => _fanoutGaps.Add(1, new KeyValuePair<string, object?>("outcome", filled ? "filled" : "skipped"));

    public void FanoutLate() => _fanoutLate.Add(1);

    /// <summary>Values of the <c>reason</c> tag of <c>parley.fanout.dropped</c>.</summary>
    public static class FanoutDropReasons
    {
        public const string QueueFull = "queue_full";
        public const string RedisUnavailable = "redis_unavailable";
        public const string BadEnvelope = "bad_envelope";
    }

    /// <summary>The event relay's backlog per sink, read at collection time (registered by the relay).</summary>
    public void ObserveEventSinks(Func<IReadOnlyList<EventSinkLag>> sinks) => _eventSinks = sinks;

    public void EventsPublished(string sink, int records) => _eventsPublished.Add(records, new KeyValuePair<string, object?>("sink", sink));

    /// <summary>
    /// A sink's counters at 0 from the start: a series that first appears at 1 is missed by <c>increase()</c> and
    /// <c>rate()</c>, so an alert on the first dead letter after a restart would never fire.
    /// </summary>
    public void StartEventSink(string sink)
    {
        var tag = new KeyValuePair<string, object?>("sink", sink);
        _eventsPublished.Add(0, tag);
        _eventDeadLetters.Add(0, tag);
        _eventPublishFailures.Add(0, tag);
    }

    public void EventDeadLettered(string sink) => _eventDeadLetters.Add(1, new KeyValuePair<string, object?>("sink", sink));

    public void EventPublishFailed(string sink) => _eventPublishFailures.Add(1, new KeyValuePair<string, object?>("sink", sink));

    /// <summary>
    /// The connection registry's counts, read at collection time: the open sockets and the frames waiting in their
    /// send queues. Registered once by the registry (the transport), which Observability does not know.
    /// </summary>
    public void ObserveConnections(Func<int> openConnections, Func<long> queuedFrames)
    {
        _openConnections = openConnections;
        _queuedFrames = queuedFrames;
    }

    /// <summary>The <c>upgrade</c> tag of a connection taken by Kestrel's connection middleware (<c>Realtime:DirectUpgrade</c>).</summary>
    public const string UpgradeDirect = "direct";

    /// <summary>The <c>upgrade</c> tag of a connection upgraded by ASP.NET Core's request pipeline.</summary>
    public const string UpgradePipeline = "pipeline";

    /// <summary>A WebSocket was accepted; <paramref name="upgrade"/> is <see cref="UpgradeDirect"/> or <see cref="UpgradePipeline"/>.</summary>
    public void ConnectionOpened(string upgrade) => _connectionsOpened.Add(1, new KeyValuePair<string, object?>("upgrade", upgrade));

    /// <summary>A connection ended; <paramref name="reason"/> is one of <see cref="CloseReasons"/>.</summary>
    public void ConnectionClosed(string reason) => _connectionsClosed.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void SlowConsumerClosed() => _slowConsumerCloses.Add(1);

    /// <summary>A client frame reached the dispatcher; <paramref name="type"/> is a frame type constant (bounded: never the client's text).</summary>
    public void FrameReceived(string type) => _framesIn.Add(1, new KeyValuePair<string, object?>("type", type));

    /// <summary>
    /// A frame was written to a socket. <paramref name="type"/> is its frame type constant; <paramref name="handedOffAt"/>
    /// is the <see cref="TimeProvider.GetTimestamp"/> at which the frame was handed to the fan-out, or 0 for a frame
    /// that was not (a reply, a catch-up page): only fanned-out frames count towards the send-to-socket latency.
    /// </summary>
    public void FrameWritten(string type, long handedOffAt)
    {
        _framesOut.Add(1, new KeyValuePair<string, object?>("type", type));
        if (handedOffAt != 0 && _sendToSocket.Enabled)
        {
            _sendToSocket.Record(_time.GetElapsedTime(handedOffAt).TotalSeconds);
        }
    }

    /// <summary>
    /// One pass of the stream sequencer: it positioned <paramref name="positioned"/> events and asked for at most
    /// <paramref name="batch"/>. Fewer than asked means nothing was left waiting when it looked: the lag restarts from 0.
    /// </summary>
    public void RecordSequencerPass(int positioned, int batch)
    {
        if (positioned > 0)
        {
            _positionsAssigned.Add(positioned);
        }

        if (positioned < batch)
        {
            Volatile.Write(ref _sequencerCaughtUpAt, _time.GetTimestamp());
        }
    }

    /// <summary>
    /// One store commit (for the store's write path): how long the commit took and how many writes it carried
    /// (1 for a plain transaction; more when writes are committed together). <paramref name="store"/> names the
    /// store implementation (<see cref="Stores"/>). <paramref name="cpu"/>, when the store measured it, is the CPU time
    /// the committing thread used over the same span. Called by the store for every committed transaction.
    /// </summary>
    public void RecordCommit(TimeSpan duration, int batchSize, string store, TimeSpan? cpu = null)
    {
        var tag = new KeyValuePair<string, object?>("store", store);
        _commitDuration.Record(duration.TotalSeconds, tag);
        _commitBatchSize.Record(batchSize, tag);
        if (cpu is { } used)
        {
            _commitCpu.Add(used.TotalSeconds, tag);
        }
    }

    /// <summary>The store's error counters at 0 from the start, one per operation (see <see cref="StartEventSink"/> for why).</summary>
    public void StartStoreErrors(IEnumerable<string> operations)
    {
        foreach (var operation in operations)
        {
            _storeErrors.Add(0, new KeyValuePair<string, object?>("operation", operation));
        }
    }

    /// <summary>
    /// One store operation (for the store): its duration, and whether it failed, which also counts it in
    /// <c>parley.store.errors</c>. <paramref name="operation"/> is a constant naming the operation (e.g. <c>append_message</c>).
    /// Called by the store for a write transaction that failed.
    /// </summary>
    public void RecordStoreOperation(string operation, TimeSpan duration, bool failed)
    {
        var tag = new KeyValuePair<string, object?>("operation", operation);
        _storeOperationDuration.Record(duration.TotalSeconds, tag);
        if (failed)
        {
            _storeErrors.Add(1, tag);
        }
    }

    /// <summary>Values of the <c>store</c> tag of the commit metrics.</summary>
    public static class Stores
    {
        public const string Sqlite = "sqlite";
        public const string Postgres = "postgres";
    }

    /// <summary>Values of the <c>reason</c> tag of <c>parley.connections.closed</c>.</summary>
    public static class CloseReasons
    {
        /// <summary>A close handshake with 1000: the client closed, or the server echoed it.</summary>
        public const string Normal = "normal";

        /// <summary>1001: the server shut down.</summary>
        public const string GoingAway = "going_away";

        /// <summary>1009: the client sent a message over the limit.</summary>
        public const string MessageTooBig = "message_too_big";

        /// <summary>1013: storage failed while the server caught the device up.</summary>
        public const string TryAgainLater = "try_again_later";

        /// <summary>4001: the send queue overflowed.</summary>
        public const string SlowConsumer = "slow_consumer";

        /// <summary>4003: the token expired.</summary>
        public const string TokenExpired = "token_expired";

        /// <summary>No close handshake: the peer answered no ping within the heartbeat timeout, and the server aborted it.</summary>
        public const string HeartbeatTimeout = "heartbeat_timeout";

        /// <summary>No close handshake: a send timeout, or the network dropped the connection.</summary>
        public const string Aborted = "aborted";
    }

    /// <summary>The <c>type</c> tag of a client frame that could not be read, or whose type Parley does not know.</summary>
    public static class FrameTags
    {
        /// <summary>Not a frame (not JSON, no type): counted apart so that a client's garbage never becomes a tag value.</summary>
        public const string Invalid = "invalid";

        /// <summary>A well-formed frame of a type Parley does not know.</summary>
        public const string Unknown = "unknown";
    }
}

/// <summary>A sink's backlog as the event relay last measured it.</summary>
internal readonly record struct EventSinkLag(string Sink, long Backlog, double AgeSeconds);

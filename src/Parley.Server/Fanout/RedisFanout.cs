using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Parley.Server.Observability;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using StackExchange.Redis;

namespace Parley.Server.Fanout;

/// <summary>
/// Several instances (docs/scaling.md): frames for this instance's sockets go to them directly, through the
/// <see cref="OrderGate"/>; the same message goes to Redis once, through a bounded queue drained by one loop (so
/// publications keep their order and a Redis stall never blocks a writer), where a script publishes it to the
/// channel of each live instance that holds a recipient. Users are routed to instances by a set per user, written
/// when a user's first socket connects here and removed with the last one; a liveness key per instance, refreshed
/// in the background, lets routes of a crashed instance die with it.
/// </summary>
internal sealed partial class RedisFanout : IFanout, IHostedService, IAsyncDisposable
{
    // One round trip per event: every recipient's route set, live instances only, one PUBLISH per instance.
    // KEYS: route sets of the recipients. ARGV: envelope, own instance id, liveness key prefix, channel prefix.
    private const string PublishScript =
        """
        local seen = {}
        local published = 0
        for _, key in ipairs(KEYS) do
          for _, id in ipairs(redis.call('SMEMBERS', key)) do
            if id ~= ARGV[2] then
              local alive = seen[id]
              if alive == nil then
                alive = redis.call('EXISTS', ARGV[3] .. id) == 1
                seen[id] = alive
                if alive then
                  redis.call('PUBLISH', ARGV[4] .. id, ARGV[1])
                  published = published + 1
                end
              end
              if not alive then
                redis.call('SREM', key, id)
              end
            end
          end
        end
        return published
        """;

    // A user's first socket here: prune dead instances from the route, add this one; 1 when no other live instance held
    // the user (the user came online). KEYS: route. ARGV: own instance id, liveness key prefix.
    private const string SubscribeScript =
        """
        local others = false
        for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
          if id ~= ARGV[1] then
            if redis.call('EXISTS', ARGV[2] .. id) == 1 then others = true else redis.call('SREM', KEYS[1], id) end
          end
        end
        redis.call('SADD', KEYS[1], ARGV[1])
        if others then return 0 end
        return 1
        """;

    // The user's last socket here left: 1 (and the last-seen time written) when no live instance holds the user any more.
    // KEYS: route, last seen. ARGV: own instance id, liveness key prefix, now (Unix ms), last-seen expiry (s).
    private const string UnsubscribeScript =
        """
        redis.call('SREM', KEYS[1], ARGV[1])
        for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
          if redis.call('EXISTS', ARGV[2] .. id) == 1 then return 0 end
          redis.call('SREM', KEYS[1], id)
        end
        -- A leave recorded late (this instance was cut off from Redis) never moves a later last-seen time back.
        local seen = tonumber(redis.call('GET', KEYS[2]))
        if seen == nil or seen < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
        return 1
        """;

    // Presence of several users: per user, 1 or 0, then the last-seen time (Unix ms) or nil.
    // KEYS: route and last-seen key of each user, in pairs. ARGV: liveness key prefix.
    private const string PresenceScript =
        """
        local result = {}
        for i = 1, #KEYS, 2 do
          local online = 0
          for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
            if redis.call('EXISTS', ARGV[1] .. id) == 1 then online = 1 break end
          end
          result[#result + 1] = online
          if online == 1 then result[#result + 1] = false else result[#result + 1] = redis.call('GET', KEYS[i + 1]) end
        end
        return result
        """;

    // Instances in the instance set whose liveness key is gone (they crashed, or stalled past InstanceTtl) are moved to the
    // crash log, scored by Redis's clock (ms); a graceful stop leaves the set first and is never logged. Returns that
    // clock, then each id logged at or after ARGV[3] (the caller's previous look) followed by its time.
    // KEYS: instance set, crash log. ARGV: own instance id, liveness key prefix, since (ms), how long entries are kept (ms).
    private const string CrashScript =
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
          if id ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. id) == 0 then
            redis.call('SREM', KEYS[1], id)
            redis.call('ZADD', KEYS[2], now, id)
          end
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
        local result = { now }
        for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[3], '+inf', 'WITHSCORES')) do
          result[#result + 1] = v
        end
        return result
        """;

    // A typing indicator starts or is refreshed: its deadline (Redis's clock, ms) is now + ARGV[1]; 1 when it was off
    // (no key, or a deadline passed that no instance has checked yet). The key outlives the deadline (ARGV[2]) so that
    // the instances checking at their own end of it still find it and exactly one of them ends it.
    // KEYS: indicator. ARGV: timeout (ms), key lifetime (ms).
    private const string TypingStartScript =
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local deadline = tonumber(redis.call('GET', KEYS[1]) or '0')
        redis.call('SET', KEYS[1], now + tonumber(ARGV[1]), 'PX', ARGV[2])
        if deadline > now then return 0 end
        return 1
        """;

    // An instance that saw an indicator checks it at the end of the timeout it knows: -1 gone (ended and announced),
    // 0 ended now (deleted here: this caller announces it), otherwise the ms left (refreshed through another instance).
    // KEYS: indicator.
    private const string TypingCheckScript =
        """
        local deadline = tonumber(redis.call('GET', KEYS[1]))
        if deadline == nil then return -1 end
        local t = redis.call('TIME')
        local left = deadline - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
        if left > 0 then return left end
        redis.call('DEL', KEYS[1])
        return 0
        """;

    // How long a typing key outlives twice its timeout: room for the instances checking it late (a sweep held up by a
    // slow Redis or store), which would otherwise find it gone and announce nothing.
    private const long TypingKeyMargin = 60_000;

    // How long the crash log keeps an entry: far longer than any instance's look at it (a third of InstanceTtl).
    private static readonly TimeSpan CrashesKept = TimeSpan.FromHours(1);

    // How long a last-seen time is kept after the user's last device left.
    private static readonly TimeSpan LastSeenKept = TimeSpan.FromDays(90);

    // Publications in flight to Redis before the loop waits for the oldest.
    private const int InFlight = 256;

    // While publications are held for an unreachable Redis: how often the loop looks whether it is back, and how long
    // after a failed publication it tries again.
    private static readonly TimeSpan HeldRetry = TimeSpan.FromMilliseconds(250);

    private readonly ConnectionHub _hub;
    private readonly IGapFiller _store;
    private readonly RedisFanoutOptions _options;
    private readonly string _configuration;
    private readonly ParleyMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisFanout> _logger;
    private readonly Channel<Publication> _queue;

    // Publications Redis could not take (unreachable), oldest first: published when it is back, before newer ones.
    // Touched by the publish loop only; at most PublishQueueCapacity of them.
    private readonly LinkedList<Publication> _held = new();

    // When a publication last failed for want of Redis (a timestamp): held ones are retried a little later (publish loop only).
    private long _failedAt;

    // When Redis last answered this instance (UTC ticks): where a repair starts when the trouble was noticed late.
    private long _lastAnswered;

    // Redis's clock (ms) at this instance's last look at the crash log (before the first: the start, less InstanceTtl).
    private long _crashesSeenUpto;

    // Crashes this instance repaired (id → when logged, ms), so that one logged at the edge of two looks is repaired once.
    // Used by one liveness beat at a time.
    private readonly Dictionary<string, long> _crashesRepaired = new(StringComparer.Ordinal);

    // 1 while a liveness beat runs (a slow Redis answer must not overlap the next beat).
    private int _beating;

    // The background repair (StartRepair): whether one runs, whether one was asked for since it last looked, and its task.
    private int _repairing;
    private int _repairAsked;
    private Task? _repair;

    // When this instance began to miss Redis (UTC ticks), 0 when it has not since the last receipt repair.
    private long _troubleSince;
    private readonly CancellationTokenSource _stopping = new();
    private bool _disposed;

    // This instance's channel, once subscribed (the client library restores it after a reconnect); one subscription at a time.
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private ChannelMessageQueue? _channel;
    private readonly Dictionary<string, int> _localUsers = new(StringComparer.Ordinal);

    // Users whose last socket here left while Redis was unreachable, with when: their routes go when it is back, and
    // that time is their last-seen time (not the time Redis came back).
    private readonly Dictionary<string, long> _leftWhileDown = new(StringComparer.Ordinal);

    // Users with sockets here whose route Redis refused (OOM, READONLY, NOPERM) or never confirmed, with a stamp of when
    // they were marked: every liveness beat adds them again until Redis takes it. Without their route no other instance
    // sends them anything, and nothing else registers it while the connection stays up.
    private readonly Dictionary<string, long> _routePending = new(StringComparer.Ordinal);
    private long _routeStamp;

    // Route registrations still on their way to Redis: a user's next socket here waits for the first one's.
    private readonly Dictionary<string, Task<RedisResult>> _routing = new(StringComparer.Ordinal);
    private readonly Lock _usersLock = new();

    // Typing indicators started while Redis was unreachable (this instance's own view until they end).
    private readonly LocalTyping _typing;
    private ConnectionMultiplexer? _redis;
    private Task? _publishing;
    private ITimer? _heartbeat;

    public RedisFanout(
        ConnectionHub hub,
        IGapFiller filler,
        IOptions<FanoutOptions> options,
        IConfiguration configuration,
        ParleyMetrics metrics,
        TimeProvider time,
        ILoggerFactory loggers)
    {
        _hub = hub;
        _store = filler;
        _options = options.Value.Redis;
        _configuration = configuration.GetConnectionString("Redis") ?? "";
        _metrics = metrics;
        _time = time;
        _typing = new LocalTyping(time);
        _logger = loggers.CreateLogger<RedisFanout>();
        Gate = new OrderGate(hub, filler, time, _options.OrderHold, metrics, loggers.CreateLogger<OrderGate>());
        _queue = Channel.CreateBounded<Publication>(
            new BoundedChannelOptions(_options.PublishQueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        // Queued and held (what an outage keeps for Redis's return): both wait to be published. The held list's count is read
        // without its owner's ordering; a gauge tolerates a value a moment old.
        metrics.ObserveFanoutQueue(() => _queue.Reader.Count + _held.Count);
        InstanceId = Guid.NewGuid().ToString("N");
        OwnChannel = RedisChannel.Literal(ChannelPrefix + InstanceId);
    }

    /// <summary>This instance's id in routes and channel names (new on every start).</summary>
    public string InstanceId { get; }

    /// <summary>The channel publishers send this instance's frames to.</summary>
    private RedisChannel OwnChannel { get; }

    public OrderGate Gate { get; }

    /// <summary>Whether Redis is reachable right now (readiness reports fan-out as degraded otherwise).</summary>
    public bool IsConnected => _redis?.IsConnected == true;

    /// <summary>
    /// Whether this instance's channel is subscribed and its connection up: without it, events other instances publish
    /// for the sockets here do not arrive (the command connection may be up all the same).
    /// </summary>
    public bool IsSubscribed =>
        _redis is { IsConnected: true } redis && Volatile.Read(ref _channel) is not null && redis.GetSubscriber().IsConnected(OwnChannel);

    /// <summary>Users with sockets here whose route Redis has not taken yet (readiness reports fan-out as degraded meanwhile).</summary>
    public int RoutesPending
    {
        get
        {
            lock (_usersLock)
            {
                return _routePending.Count;
            }
        }
    }

    private string LivenessPrefix => _options.Prefix + ":instance:";

    private string ChannelPrefix => _options.Prefix + ":events:";

    public ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken)
    {
        Gate.Offer(message);
        var routes = message.Parts.SelectMany(p => p.UserIds).Where(u => u != message.ExceptUserId).Distinct(StringComparer.Ordinal)
            .Select(u => (RedisKey)RouteKey(u)).ToArray();
        // Typing and presence are of the moment: after an outage they would be stale, so they are never held for it.
        var holdable = message.Parts[0].Frame.Type is not (FrameTypes.Typing or FrameTypes.Presence);
        if (routes.Length > 0 && !_queue.Writer.TryWrite(new Publication(routes, FanoutEnvelope.Encode(message), holdable)))
        {
            _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.QueueFull);
            Log.QueueFull(_logger, _options.PublishQueueCapacity);
        }

        return ValueTask.CompletedTask;
    }

    public async ValueTask<Subscription> SubscribeAsync(string userId, CancellationToken cancellationToken)
    {
        var cameOnline = await RouteAsync(userId, cancellationToken);
        try
        {
            // After routing: events committed after this read reach this instance, and the gate expects the next seqs.
            // The socket's baseline is the same read (returned), not a second query.
            var lastSeqs = await _store.ReadLastSeqsAsync(userId, cancellationToken);
            foreach (var (conversationId, lastSeq) in lastSeqs)
            {
                Gate.Prime(conversationId, lastSeq);
            }

            return new Subscription(cameOnline, lastSeqs);
        }
        catch (Exception ex) when (ex is System.Data.Common.DbException or TimeoutException or OperationCanceledException)
        {
            // Unprimed conversations hold their first frame briefly instead (OrderGate.UnknownHold).
            Log.PrimeFailed(_logger, ex.Message);
            return new Subscription(cameOnline);
        }
    }

    private async ValueTask<bool> RouteAsync(string userId, CancellationToken cancellationToken)
    {
        Task<RedisResult>? registered = null;
        var first = true;
        lock (_usersLock)
        {
            var count = _localUsers.GetValueOrDefault(userId) + 1;
            _localUsers[userId] = count;
            _leftWhileDown.Remove(userId);
            if (count > 1)
            {
                // More sockets of the user here: already online. The route may still be on its way (the first socket's
                // registration): this socket reads its baseline only once events for the user reach this instance.
                first = false;
                registered = _routing.GetValueOrDefault(userId);
            }
            else if (_redis is { IsConnected: true } redis)
            {
                // Issued under the lock: a concurrent last-socket removal for this user reaches Redis in call order.
                registered = redis.GetDatabase().ScriptEvaluateAsync(SubscribeScript, [RouteKey(userId)], [InstanceId, LivenessPrefix]);
                _routing[userId] = registered;
                // Forgotten once Redis answered, not when this socket stops waiting (it may be cancelled or time out first).
                // Refused: pending, for the liveness beat to add, as long as the user has sockets here.
                _ = registered.ContinueWith(
                    (done, user) =>
                    {
                        lock (_usersLock)
                        {
                            if (_routing.TryGetValue((string)user!, out var pending) && pending == done)
                            {
                                _routing.Remove((string)user!);
                                if (!done.IsCompletedSuccessfully && _localUsers.ContainsKey((string)user!))
                                {
                                    _routePending[(string)user!] = ++_routeStamp;
                                }
                            }
                        }
                    },
                    userId,
                    CancellationToken.None,
                    TaskContinuationOptions.None,
                    TaskScheduler.Default);
            }
        }

        if (registered is null)
        {
            // Redis is down: online as far as this instance knows (routes are registered again on reconnect).
            return first;
        }

        try
        {
            var cameOnline = (long)await registered.WaitAsync(_options.SubscribeTimeout, _time, cancellationToken) == 1;
            return first && cameOnline;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.RouteFailed(_logger, ex.Message);
            return first;
        }
        catch (OperationCanceledException)
        {
            return false; // the client went away while routing; its disconnect still pairs with this
        }
    }

    public async ValueTask<bool> UnsubscribeAsync(string userId)
    {
        Task<RedisResult>? removed = null;
        var left = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_usersLock)
        {
            var count = _localUsers.GetValueOrDefault(userId) - 1;
            if (count > 0)
            {
                _localUsers[userId] = count;
                return false;
            }

            _localUsers.Remove(userId);
            _routePending.Remove(userId);
            if (_redis is { IsConnected: true } redis)
            {
                removed = RemoveRouteAsync(redis.GetDatabase(), userId, left);
            }
            else
            {
                _leftWhileDown[userId] = left;
            }
        }

        if (removed is null)
        {
            return false; // unknown whether devices remain elsewhere: no presence change announced
        }

        try
        {
            return (long)await removed.WaitAsync(_options.SubscribeTimeout, _time) == 1;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            lock (_usersLock)
            {
                if (!_localUsers.ContainsKey(userId))
                {
                    _leftWhileDown.TryAdd(userId, left);
                }
            }

            Log.RouteFailed(_logger, ex.Message);
            return false;
        }
    }

    public async ValueTask<IReadOnlyDictionary<string, UserPresence>> GetPresenceAsync(
        IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
    {
        var users = userIds.Distinct(StringComparer.Ordinal).ToArray();
        var presence = new Dictionary<string, UserPresence>(StringComparer.Ordinal);
        if (_redis is { IsConnected: true } redis && users.Length > 0)
        {
            try
            {
                var keys = users.SelectMany(u => new RedisKey[] { RouteKey(u), LastSeenKey(u) }).ToArray();
                var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(PresenceScript, keys, [LivenessPrefix])
                    .WaitAsync(_options.SubscribeTimeout, _time, cancellationToken))!;
                for (var i = 0; i < users.Length; i++)
                {
                    var online = (long)result[2 * i] == 1;
                    var seen = result[2 * i + 1];
                    presence[users[i]] = new UserPresence(online, online || seen.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)seen));
                }

                return presence;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.RouteFailed(_logger, ex.Message);
            }
        }

        // Redis unreachable: what this instance knows (its own sockets).
        foreach (var user in users)
        {
            presence[user] = new UserPresence(_hub.IsConnected(user), null);
        }

        return presence;
    }

    public async ValueTask<bool> StartTypingAsync(Guid conversationId, string userId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_redis is { IsConnected: true } redis)
        {
            try
            {
                var ms = Math.Max(1, (long)timeout.TotalMilliseconds);
                var started = await redis.GetDatabase().ScriptEvaluateAsync(TypingStartScript, [TypingKey(conversationId, userId)], [ms, 2 * ms + TypingKeyMargin])
                    .WaitAsync(_options.SubscribeTimeout, _time, cancellationToken);
                // One held here since an outage was announced already: Redis holds it from now on.
                var heldHere = _typing.Stop(conversationId, userId);
                return (long)started! == 1 && !heldHere;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.TypingFailed(_logger, ex.Message);
            }
        }

        // Redis unreachable: this instance's own view, as for presence (other instances may announce the same indicator).
        return _typing.Start(conversationId, userId, timeout);
    }

    public async ValueTask<bool> StopTypingAsync(Guid conversationId, string userId, bool seenHere)
    {
        // One started here while Redis was unreachable is ended here as well, whatever Redis says.
        var ended = _typing.Stop(conversationId, userId);
        if (_redis is { IsConnected: true } redis)
        {
            try
            {
                return await redis.GetDatabase().KeyDeleteAsync(TypingKey(conversationId, userId)).WaitAsync(_options.SubscribeTimeout, _time) || ended;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.TypingFailed(_logger, ex.Message);
            }
        }

        // Redis could not say (or the delete may have gone through unanswered): an instance that saw the indicator
        // announces the end, as a check that cannot reach Redis does. A second "false" is harmless; an indicator shown
        // for good is not. One that never saw it (every message sent while Redis is down) stays silent.
        return ended || seenHere;
    }

    public async ValueTask<TypingCheck> CheckTypingAsync(Guid conversationId, string userId)
    {
        // One started here while Redis was unreachable is this instance's to check.
        if (_typing.Check(conversationId, userId) is { Outcome: not TypingOutcome.Gone } local)
        {
            return local;
        }

        if (_redis is { IsConnected: true } redis)
        {
            try
            {
                var left = (long)(await redis.GetDatabase().ScriptEvaluateAsync(TypingCheckScript, [TypingKey(conversationId, userId)])
                    .WaitAsync(_options.SubscribeTimeout, _time))!;
                return left switch
                {
                    < 0 => TypingCheck.Gone,
                    0 => TypingCheck.Ended,
                    _ => TypingCheck.RefreshedFor(TimeSpan.FromMilliseconds(left)),
                };
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.TypingFailed(_logger, ex.Message);
            }
        }

        // Unknown: the end is announced (a second "false" is harmless, an indicator shown for good is not).
        return TypingCheck.Ended;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var config = ConfigurationOptions.Parse(_configuration);
        config.AbortOnConnectFail = false; // start without Redis; the library keeps trying
        config.BacklogPolicy = BacklogPolicy.FailFast; // while disconnected, publications fail at once instead of piling up
        config.ClientName ??= "parley-" + InstanceId[..12];
        _redis = await ConnectionMultiplexer.ConnectAsync(config);
        _redis.ConnectionRestored += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                Log.Reconnected(_logger);
                _ = RestoredAsync();
            }
            else if (e.ConnectionType == ConnectionType.Subscription)
            {
                _ = RestoredAsync(); // frames for this instance may have been lost while it was down
            }
        };
        _redis.ConnectionFailed += (_, e) =>
        {
            MarkTrouble(); // either connection: publications or incoming frames were lost
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                Log.Disconnected(_logger, e.FailureType.ToString(), e.Exception?.Message);
            }
        };

        if (!_redis.IsConnected)
        {
            MarkTrouble(); // other instances' receipts of the time before it connects are repaired when it does
        }

        await SubscribeChannelAsync();
        await RegisterAsync();
        // Crashes logged from shortly before the start on are this instance's to repair (its first sockets may come at once).
        _crashesSeenUpto = (_time.GetUtcNow() - _options.InstanceTtl).ToUnixTimeMilliseconds();
        var beat = _options.InstanceTtl / 3;
        _heartbeat = _time.CreateTimer(_ => _ = RefreshLivenessAsync(), null, beat, beat);
        _publishing = Task.Run(PublishLoopAsync, CancellationToken.None);
        Log.Started(_logger, InstanceId, _redis.IsConnected);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed))
        {
            // A stop after the container disposed this (a host stopped twice): nothing left to stop.
            return;
        }

        _heartbeat?.Dispose();
        try
        {
            await _stopping.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            return; // disposed while stopping
        }

        _queue.Writer.TryComplete();
        if (_publishing is not null)
        {
            await _publishing.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        if (Volatile.Read(ref _repair) is { } repair)
        {
            // Its store reads end with the stopping token.
            await repair.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        // Read only once the loop has ended (it owns the held publications).
        var published = _publishing is null || (_publishing.IsCompletedSuccessfully && _held.Count == 0);
        if (_redis is { IsConnected: true } redis)
        {
            try
            {
                // Gone at once rather than after InstanceTtl: publishers stop sending to this instance. Out of the instance
                // set first when everything it had to publish went out: then this is no crash. Otherwise it stays in the
                // set, and the others, finding its liveness key gone, read back what it could not publish, as after a crash.
                var db = redis.GetDatabase();
                if (published)
                {
                    await ((Task)db.SetRemoveAsync(InstancesKey, InstanceId)).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken)
                        .ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }

                await ((Task)db.KeyDeleteAsync(LivenessPrefix + InstanceId)).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken)
                    .ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            catch (ObjectDisposedException)
            {
                // Stopped after the container disposed the connection (a second stop): the key expires by itself.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Volatile.Write(ref _disposed, true);
        _heartbeat?.Dispose();
        _stopping.Dispose();
        _subscribing.Dispose();
        Gate.Dispose();
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }

    private string RouteKey(string userId) => _options.Prefix + ":route:" + userId;

    private string InstancesKey => _options.Prefix + ":instances";

    private string CrashesKey => _options.Prefix + ":crashed";

    private string LastSeenKey(string userId) => _options.Prefix + ":seen:" + userId;

    private string TypingKey(Guid conversationId, string userId) => $"{_options.Prefix}:typing:{conversationId:N}:{userId}";

    /// <summary>The user's last socket here is gone: <see cref="UnsubscribeScript"/>, 1 when no live instance holds the user.</summary>
    private Task<RedisResult> RemoveRouteAsync(IDatabaseAsync db, string userId, long nowUnixMs) =>
        db.ScriptEvaluateAsync(UnsubscribeScript, [RouteKey(userId), LastSeenKey(userId)], [InstanceId, LivenessPrefix, nowUnixMs, (long)LastSeenKept.TotalSeconds]);

    private void Received(ChannelMessage message)
    {
        if (!FanoutEnvelope.TryDecode(((byte[])message.Message!).AsSpan(), out var decoded))
        {
            _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.BadEnvelope);
            Log.BadEnvelope(_logger);
            return;
        }

        _metrics.FanoutReceived();
        var handedOff = _time.GetTimestamp();
        foreach (var part in decoded!.Parts)
        {
            part.Frame.HandedOff(handedOff);
        }

        Gate.Offer(decoded);
    }

    /// <summary>
    /// Subscribes this instance's channel unless it is already. Redis may be unreachable when the instance starts: it
    /// starts all the same, and the subscription is made when Redis is reached (reconnect or liveness beat).
    /// </summary>
    private async Task SubscribeChannelAsync()
    {
        if (_redis is not { IsConnected: true } redis || Volatile.Read(ref _channel) is not null)
        {
            return;
        }

        await _subscribing.WaitAsync();
        try
        {
            if (_channel is null)
            {
                var channel = await redis.GetSubscriber().SubscribeAsync(OwnChannel);
                channel.OnMessage(Received);
                Volatile.Write(ref _channel, channel);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.RouteFailed(_logger, ex.Message);
            try
            {
                // The client registers a queue before it asks the server and would restore it on reconnect: an orphan
                // that nobody reads. Removed, so that the next try is the channel's only subscription.
                await redis.GetSubscriber().UnsubscribeAsync(OwnChannel);
            }
            catch (Exception unsubscribe) when (unsubscribe is RedisException or TimeoutException)
            {
                Log.RouteFailed(_logger, unsubscribe.Message);
            }
        }
        finally
        {
            _subscribing.Release();
        }
    }

    /// <summary>
    /// With <paramref name="everything"/>: the liveness key, and a route for every user with sockets here (after a start or
    /// a Redis restart); without it, the routes Redis refused before. Always: the removal of the routes of users who left
    /// while Redis could not be told. Both are forgotten only once Redis took them; until then every liveness beat sends
    /// them again (a user missing from their route gets nothing from other instances; a user left behind in a route of a
    /// live instance is online for good).
    /// </summary>
    private async Task RegisterAsync(bool everything = true)
    {
        if (_redis is not { IsConnected: true } redis)
        {
            return;
        }

        (KeyValuePair<string, long> Left, Task<RedisResult> Removed)[] removals = [];
        (string UserId, Task<bool> Added)[] routes = [];
        KeyValuePair<string, long>[] pending = [];
        try
        {
            string[] users;
            var writes = new List<Task>();
            lock (_usersLock)
            {
                users = everything ? [.. _localUsers.Keys] : [.. _routePending.Keys];
                pending = [.. _routePending];
                if (users.Length == 0 && !everything && _leftWhileDown.Count == 0)
                {
                    return;
                }

                // Sent under the lock, like a socket's own registration: a user who connects meanwhile either is among
                // these users, or registers after this batch's removal of the route reached Redis, never before it.
                var batch = redis.GetDatabase().CreateBatch();
                if (everything)
                {
                    writes.Add(batch.StringSetAsync(LivenessPrefix + InstanceId, "1", _options.InstanceTtl));
                    writes.Add(batch.SetAddAsync(InstancesKey, InstanceId));
                }

                routes = [.. users.Select(u => (u, batch.SetAddAsync(RouteKey(u), InstanceId)))];
                writes.AddRange(routes.Select(r => r.Added));

                removals = [.. _leftWhileDown.Select(left => (left, RemoveRouteAsync(batch, left.Key, left.Value)))];
                writes.AddRange(removals.Select(r => r.Removed));
                batch.Execute();
            }

            await Task.WhenAll(writes);
            if (users.Length > 0)
            {
                Log.Registered(_logger, users.Length);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.RouteFailed(_logger, ex.Message);
        }
        finally
        {
            lock (_usersLock)
            {
                var marked = pending.ToDictionary(StringComparer.Ordinal);
                foreach (var (userId, added) in routes)
                {
                    if (added.IsCompletedSuccessfully)
                    {
                        // Taken: no longer pending, unless marked again since (a later refusal of a socket's own registration).
                        if (marked.TryGetValue(userId, out var stamp) && _routePending.TryGetValue(userId, out var current) && current == stamp)
                        {
                            _routePending.Remove(userId);
                        }
                    }
                    else if (_localUsers.ContainsKey(userId))
                    {
                        _routePending[userId] = ++_routeStamp;
                    }
                }

                foreach (var ((userId, leftAt), removed) in removals)
                {
                    // Unless the user came back meanwhile (the entry is gone) or left again (a newer time, still to send).
                    if (removed.IsCompletedSuccessfully && _leftWhileDown.TryGetValue(userId, out var current) && current == leftAt)
                    {
                        _leftWhileDown.Remove(userId);
                    }
                }
            }
        }
    }

    private async Task RefreshLivenessAsync()
    {
        if (_redis is not { IsConnected: true } redis || Interlocked.Exchange(ref _beating, 1) == 1)
        {
            return; // not connected, or the previous beat still waits for Redis
        }

        try
        {
            await SubscribeChannelAsync(); // not yet when Redis was unreachable at the start

            // Set, not refreshed: after a Redis restart the key is back within a third of the TTL even if no event said so.
            // A missing key means Redis lost it (a restart) or this instance stalled past InstanceTtl and publishers dropped
            // its routes as dead: register everything again, not only the key, and repair what was not carried meanwhile.
            var answered = Volatile.Read(ref _lastAnswered);
            var previous = await redis.GetDatabase().StringSetAndGetAsync(LivenessPrefix + InstanceId, "1", _options.InstanceTtl);
            Volatile.Write(ref _lastAnswered, _time.GetUtcNow().UtcTicks);
            if (previous.IsNull)
            {
                MarkTroubleSince(answered > 0 ? answered : _time.GetUtcNow().UtcTicks);
                await RegisterAsync();
                StartRepair();
            }
            else
            {
                await RegisterAsync(everything: false); // what Redis did not take before, if anything
            }

            await LookForCrashesAsync(redis);
            if (Volatile.Read(ref _troubleSince) != 0)
            {
                // A repair that could not run (a connection not back yet, its ping unanswered) is tried again at each beat
                // until one does: no later event may ask for it.
                StartRepair();
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.RouteFailed(_logger, ex.Message);
        }
        finally
        {
            Volatile.Write(ref _beating, 0);
        }
    }

    /// <summary>
    /// Another instance crashed (its liveness key expired while it was still in the instance set): events it committed
    /// but had not published yet never reached this instance, and no later event may reveal them. Repaired as after an
    /// outage of Redis, from the earliest time the crashed instance may have stopped publishing (<see cref="RepairReceiptsAsync"/>).
    /// </summary>
    private async Task LookForCrashesAsync(ConnectionMultiplexer redis)
    {
        var since = Volatile.Read(ref _crashesSeenUpto);
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(
            CrashScript, [InstancesKey, CrashesKey], [InstanceId, LivenessPrefix, since, (long)CrashesKept.TotalMilliseconds]))!;
        var now = (long)result[0];
        Volatile.Write(ref _crashesSeenUpto, now);
        var earliest = long.MaxValue;
        for (var i = 1; i + 1 < result.Length; i += 2)
        {
            var id = (string)result[i]!;
            var crashedAt = (long)(double)result[i + 1];
            if (_crashesRepaired.TryAdd(id, crashedAt))
            {
                earliest = Math.Min(earliest, crashedAt);
                Log.InstanceCrashed(_logger, id);
            }
        }

        foreach (var (id, at) in _crashesRepaired)
        {
            if (at < now - (long)CrashesKept.TotalMilliseconds)
            {
                _crashesRepaired.Remove(id); // out of the log too
            }
        }

        if (earliest == long.MaxValue)
        {
            return;
        }

        // Its key expired InstanceTtl after its last refresh, and was found gone up to a beat (a third of the TTL) later:
        // it may have stopped publishing that long before the detection.
        var from = DateTimeOffset.FromUnixTimeMilliseconds(earliest) - _options.InstanceTtl - _options.InstanceTtl / 3 - TimeSpan.FromSeconds(1);
        MarkTroubleSince(from.UtcTicks);
        StartRepair();
    }

    /// <summary>
    /// Runs <see cref="RepairReceiptsAsync"/> in the background, one at a time, and once more if asked again meanwhile.
    /// Never inside the liveness beat: a repair reads the store for every local user and may take longer than
    /// <see cref="RedisFanoutOptions.InstanceTtl"/>; a beat waiting for it would let this instance's key expire, so that
    /// publishers dropped its routes and every instance repaired again, over and over.
    /// </summary>
    private void StartRepair()
    {
        Volatile.Write(ref _repairAsked, 1);
        if (Interlocked.CompareExchange(ref _repairing, 1, 0) == 0)
        {
            _repair = Task.Run(RepairLoopAsync, CancellationToken.None);
        }
    }

    private async Task RepairLoopAsync()
    {
        while (true)
        {
            while (Interlocked.Exchange(ref _repairAsked, 0) == 1 && !_stopping.IsCancellationRequested)
            {
                try
                {
                    await RepairReceiptsAsync();
                }
                catch (Exception ex)
                {
                    // Whatever it was (the connection disposed while stopping, say), the loop must not die holding the flag.
                    Log.RepairFailed(_logger, ex.Message);
                }
            }

            Volatile.Write(ref _repairing, 0);
            // Asked again after the last look and before the flag went down: this loop takes it, unless a new one did.
            if (Volatile.Read(ref _repairAsked) == 0 || _stopping.IsCancellationRequested || Interlocked.CompareExchange(ref _repairing, 1, 0) != 0)
            {
                return;
            }
        }
    }

    private async Task PublishLoopAsync()
    {
        var inFlight = new Queue<(Task<RedisResult> Task, Publication Item)>();
        var reader = _queue.Reader;
        var argsPrefix = new RedisValue[] { RedisValue.Null, InstanceId, LivenessPrefix, ChannelPrefix };
        while (true)
        {
            var redis = _redis is { IsConnected: true } connected ? connected : null;
            Publication item;
            if (_held.Count > 0)
            {
                if (redis is null || _time.GetElapsedTime(_failedAt) < HeldRetry)
                {
                    // Settled first: what fails in flight is older than anything held and goes back in front of it.
                    await SettleAllAsync(inFlight);
                    while (_held.Count < _options.PublishQueueCapacity && reader.TryRead(out var newer))
                    {
                        HoldNewest(newer);
                    }

                    if (_stopping.IsCancellationRequested)
                    {
                        return; // what is still held is left to the receivers' store reads
                    }

                    // Full: newer publications wait in the queue (which drops beyond its capacity), so wait on the clock.
                    if (_held.Count >= _options.PublishQueueCapacity)
                    {
                        await Task.Delay(HeldRetry, _time, _stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    }
                    else if (!await WaitToReadAsync(reader, HeldRetry))
                    {
                        return;
                    }

                    continue;
                }

                // Older than anything still queued; in flight like any other, so a failure puts it back in front.
                item = _held.First!.Value;
                _held.RemoveFirst();
                if (_held.Count == 0)
                {
                    // The last held one goes out: Redis takes publications again, also after failures that never
                    // disconnected the client (timeouts), so register and repair now rather than at a reconnect.
                    _ = RestoredAsync();
                }
            }
            else if (!reader.TryRead(out item!))
            {
                // Nothing waiting: settle what is in flight, then sleep until something comes.
                await SettleAllAsync(inFlight);
                if (_held.Count > 0)
                {
                    continue; // some failed in flight
                }

                if (!await reader.WaitToReadAsync(CancellationToken.None))
                {
                    return;
                }

                continue;
            }
            else if (redis is null)
            {
                // Settled first, so that publications that failed in flight are held before this one.
                await SettleAllAsync(inFlight);
                _failedAt = _time.GetTimestamp();
                MarkTrouble();
                HoldNewest(item);
                continue;
            }

            var args = (RedisValue[])argsPrefix.Clone();
            args[0] = item.Envelope;
            inFlight.Enqueue((redis.GetDatabase().ScriptEvaluateAsync(PublishScript, item.Routes, args), item));
            if (inFlight.Count >= InFlight)
            {
                var oldest = inFlight.Peek().Task;
                await ((Task)oldest).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (oldest.IsCompletedSuccessfully)
                {
                    inFlight.Dequeue();
                    Answered();
                }
                else
                {
                    await SettleAllAsync(inFlight); // the oldest failed: the others in flight go back with it, in order
                }
            }
        }
    }

    /// <summary>
    /// Settles every publication in flight, oldest first. Those Redis could not take go back in front of the held
    /// ones, in their order (they were sent before any held one was queued or after it was taken from the front).
    /// </summary>
    private async Task SettleAllAsync(Queue<(Task<RedisResult> Task, Publication Item)> inFlight)
    {
        List<Publication>? failed = null;
        while (inFlight.Count > 0)
        {
            var (task, item) = inFlight.Dequeue();
            try
            {
                await task;
                Answered();
            }
            catch (Exception ex) when (ex is RedisConnectionException or RedisTimeoutException or TimeoutException || IsPassing(ex))
            {
                // Redis went away under it, or refused it for a while (a failover, a load, a long script): published again
                // when it is back (not at once: it may be going away right now). The receivers would not notice the loss.
                Log.PublishFailed(_logger, ex.Message);
                if (item.Holdable)
                {
                    (failed ??= []).Add(item);
                }
                else
                {
                    _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.RedisUnavailable);
                }
            }
            catch (RedisException ex)
            {
                // An error of this publication itself (it would fail again, and held it would block every later one).
                _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.RedisUnavailable);
                Log.PublishFailed(_logger, ex.Message);
            }
        }

        if (failed is null)
        {
            return;
        }

        _failedAt = _time.GetTimestamp();
        MarkTrouble();
        for (var i = failed.Count - 1; i >= 0; i--)
        {
            _held.AddFirst(failed[i]);
        }

        while (_held.Count > _options.PublishQueueCapacity)
        {
            _held.RemoveLast(); // the newest beyond the bound: left to the receivers' store reads
            _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.RedisUnavailable);
        }
    }

    /// <summary>
    /// A server error that passes with time, while the connection stays up: a primary turned replica in a failover
    /// (READONLY), a primary lost (MASTERDOWN), a dataset loading (LOADING), a long script (BUSY), memory full (OOM).
    /// </summary>
    private static bool IsPassing(Exception ex) =>
        ex is RedisServerException && ex.Message.Split(' ', 2)[0] is "READONLY" or "MASTERDOWN" or "LOADING" or "BUSY" or "OOM" or "TRYAGAIN";

    private void Answered()
    {
        _metrics.FanoutPublished();
        Volatile.Write(ref _lastAnswered, _time.GetUtcNow().UtcTicks);
    }

    /// <summary>Waits for a publication to read, at most <paramref name="timeout"/>; false once the queue is completed (stopped).</summary>
    private async Task<bool> WaitToReadAsync(ChannelReader<Publication> reader, TimeSpan timeout)
    {
        using var wait = new CancellationTokenSource(timeout, _time);
        try
        {
            return await reader.WaitToReadAsync(wait.Token);
        }
        catch (OperationCanceledException) when (wait.IsCancellationRequested)
        {
            return true; // time to look whether Redis is back
        }
    }

    /// <summary>A newer publication Redis cannot take now: kept behind the held ones while there is room and it is worth it.</summary>
    private void HoldNewest(Publication item)
    {
        if (item.Holdable && _held.Count < _options.PublishQueueCapacity)
        {
            _held.AddLast(item);
            return;
        }

        _metrics.FanoutDropped(ParleyMetrics.FanoutDropReasons.RedisUnavailable);
    }

    /// <summary>Something was not carried to other instances from now on: receipts are repaired when Redis is back.</summary>
    /// <remarks>
    /// From when Redis last answered, if it did: trouble is often noticed seconds late (a timeout, a silent partition).
    /// </remarks>
    private void MarkTrouble()
    {
        var now = _time.GetUtcNow().UtcTicks;
        var answered = Volatile.Read(ref _lastAnswered);
        Interlocked.CompareExchange(ref _troubleSince, answered > 0 && answered < now ? answered : now, 0);
    }

    /// <summary>Something was not carried to this instance from <paramref name="ticks"/> on (UTC ticks): the earliest trouble counts.</summary>
    private void MarkTroubleSince(long ticks)
    {
        while (true)
        {
            var current = Volatile.Read(ref _troubleSince);
            if ((current != 0 && current <= ticks) || Interlocked.CompareExchange(ref _troubleSince, ticks, current) == current)
            {
                return;
            }
        }
    }

    /// <summary>Redis is reachable again: the channel, the routes, then the receipts (in this order: see RepairReceiptsAsync).</summary>
    private async Task RestoredAsync()
    {
        try
        {
            await SubscribeChannelAsync();
            await RegisterAsync();
            StartRepair();
        }
        catch (Exception ex)
        {
            // In the background (a reconnect event, the publish loop); the instance may be stopping.
            Log.RepairFailed(_logger, ex.Message);
        }
    }

    /// <summary>
    /// After Redis was unreachable: this instance's sockets get their users' current watermarks of conversations where
    /// one moved since the trouble began, read from the store. Other instances' held publications bring most of them
    /// too; this also covers what they could not hold, what an instance that died meanwhile held, and what Redis lost
    /// in a restart. Watermarks are maxima, so a second copy changes nothing (docs/websocket.md).
    /// Events the same way: the order gate reads back what each conversation's expectation still waits for up to its
    /// current last seq (<see cref="OrderGate.CatchUp"/>), so that the last event of a conversation, which no later
    /// one would reveal as missing, still arrives; and every socket with cursors checks for what it lacks.
    /// </summary>
    internal async Task RepairReceiptsAsync()
    {
        if (Volatile.Read(ref _troubleSince) == 0)
        {
            return;
        }

        if (_redis is not { IsConnected: true } redis || !redis.GetSubscriber().IsConnected(OwnChannel))
        {
            return; // not both connections back yet: the other's restore repairs (frames may still be on their way)
        }

        try
        {
            // IsConnected says the subscription's connection is up, not that Redis has taken the SUBSCRIBE the client sent
            // again after reconnecting: a ping on that connection is answered after it. Read before that, an event
            // published in between would be neither read back nor received.
            await redis.GetSubscriber().PingAsync();
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.RepairFailed(_logger, ex.Message);
            return; // the next liveness beat tries again
        }

        var since = Interlocked.Exchange(ref _troubleSince, 0);
        if (since == 0)
        {
            return;
        }

        string[] users;
        lock (_usersLock)
        {
            users = [.. _localUsers.Keys];
        }

        _store.RecheckCursors();
        var frames = 0;
        try
        {
            var members = new Dictionary<Guid, (long LastSeq, List<string> Users)>();
            foreach (var user in users)
            {
                string[] recipient = [user];
                foreach (var frame in await _store.ReadWatermarkFramesAsync(user, new DateTimeOffset(since, TimeSpan.Zero), _stopping.Token))
                {
                    Gate.Offer(new FanoutMessage(recipient, frame));
                    frames++;
                }

                foreach (var (conversationId, lastSeq) in await _store.ReadLastSeqsAsync(user, _stopping.Token))
                {
                    if (members.TryGetValue(conversationId, out var conversation))
                    {
                        conversation.Users.Add(user);
                        members[conversationId] = (Math.Max(conversation.LastSeq, lastSeq), conversation.Users);
                    }
                    else
                    {
                        members[conversationId] = (lastSeq, [user]);
                    }
                }
            }

            foreach (var (conversationId, (lastSeq, holders)) in members)
            {
                Gate.CatchUp(conversationId, lastSeq, holders);
            }

            Log.ReceiptsRepaired(_logger, users.Length, frames);
        }
        catch (Exception ex)
        {
            // Best effort, in the background (the store away, the instance stopping): devices still get the receipts
            // when they reconnect (the catch-up replays watermarks).
            Log.RepairFailed(_logger, ex.Message);
        }
    }

    /// <summary>What the publish loop carries to Redis: the recipients' route keys and the envelope.</summary>
    private sealed record Publication(RedisKey[] Routes, byte[] Envelope, bool Holdable);

    private static partial class Log
    {
        [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "Redis fan-out started as instance {InstanceId} (connected: {Connected})")]
        public static partial void Started(ILogger logger, string instanceId, bool connected);

        [LoggerMessage(EventId = 7002, Level = LogLevel.Warning,
            Message = "Redis connection lost ({FailureType}: {Reason}); live events reach only this instance's sockets until it is back")]
        public static partial void Disconnected(ILogger logger, string failureType, string? reason);

        [LoggerMessage(EventId = 7003, Level = LogLevel.Information, Message = "Redis connection restored; registering this instance's users again")]
        public static partial void Reconnected(ILogger logger);

        [LoggerMessage(EventId = 7004, Level = LogLevel.Information, Message = "Registered routes for {Users} users with sockets on this instance")]
        public static partial void Registered(ILogger logger, int users);

        [LoggerMessage(EventId = 7016, Level = LogLevel.Warning,
            Message = "Instance {CrashedInstanceId} stopped without leaving (its liveness key expired): events it committed but had not published are read back for this instance's sockets")]
        public static partial void InstanceCrashed(ILogger logger, string crashedInstanceId);

        [LoggerMessage(EventId = 7014, Level = LogLevel.Information, Message = "Repaired after Redis was unreachable: {Frames} watermark frames to {Users} users with sockets on this instance; missed events read back where conversations were expected to go on, and cursors checked")]
        public static partial void ReceiptsRepaired(ILogger logger, int users, int frames);

        [LoggerMessage(EventId = 7015, Level = LogLevel.Warning, Message = "Receipts and events could not be repaired after Redis was unreachable ({Reason}); devices get them at their cursor check or when they reconnect")]
        public static partial void RepairFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 7005, Level = LogLevel.Warning, Message = "Redis route or liveness write failed: {Reason}")]
        public static partial void RouteFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 7006, Level = LogLevel.Warning, Message = "Publishing to other instances failed: {Reason}; devices recover the event through their cursors")]
        public static partial void PublishFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 7007, Level = LogLevel.Warning,
            Message = "The fan-out publish queue is full ({Capacity}): an event was not carried to other instances")]
        public static partial void QueueFull(ILogger logger, int capacity);

        [LoggerMessage(EventId = 7008, Level = LogLevel.Warning, Message = "Dropped a fan-out envelope this version cannot read")]
        public static partial void BadEnvelope(ILogger logger);

        [LoggerMessage(EventId = 7009, Level = LogLevel.Debug, Message = "Order expectations not read for a new socket: {Reason}")]
        public static partial void PrimeFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 7017, Level = LogLevel.Warning, Message = "Redis typing state not reached, this instance's own view used: {Reason}")]
        public static partial void TypingFailed(ILogger logger, string reason);
    }
}

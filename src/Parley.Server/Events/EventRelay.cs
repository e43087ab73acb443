using Microsoft.Extensions.Options;
using Parley.Server.Observability;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>
/// Publishes the committed log to every configured sink (docs/events.md, Events/README.md): one loop per sink, active on
/// the instance that holds the sink's lease. A pass reads the positioned events (and receipts) after the sink's recorded
/// positions, builds their records, publishes them, and records the new positions only after the sink acknowledged all
/// of them, so a crash in between publishes the batch again (the same event ids). While a pass reads, builds and
/// publishes (a busy database, a broker away, a webhook retrying), the lease is renewed beside it; if it cannot be,
/// the pass is abandoned.
/// </summary>
internal sealed partial class EventRelay(
    EventSinks sinks,
    IChatStore store,
    StorageState storage,
    IDeviceDirectory devices,
    EventStreamStatus status,
    ParleyMetrics metrics,
    IOptions<EventsOptions> options,
    TimeProvider time,
    ILogger<EventRelay> logger) : BackgroundService
{
    /// <summary>This process's name on leases: unique per process run.</summary>
    private readonly string _owner = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";

    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan BacklogInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan PruneInterval = TimeSpan.FromSeconds(5);
    private const int PruneChunk = 5000;
    private static readonly TimeSpan AlertInterval = TimeSpan.FromMinutes(1);

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var all = sinks.All;
        var names = all.Select(s => s.Name).ToList();
        return Task.WhenAll(all.SelectMany(sink => new[] { RunAsync(sink, names, stoppingToken), MeasureAsync(sink, stoppingToken) }));
    }

    /// <summary>
    /// A sink's backlog, measured once a second beside its relay loop (whose publish may wait minutes while a broker is
    /// away or a webhook retries), for /ready and /metrics on every instance; the alert is logged by the leader only, so
    /// a deployment raises it once however many instances it runs.
    /// </summary>
    private async Task MeasureAsync(IEventSink sink, CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var state = status.For(sink.Name);
        var nextAlert = DateTimeOffset.MinValue;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (storage.IsReady)
                {
                    var backlog = await store.GetRelayBacklogAsync(sink.Name, stoppingToken);
                    state.Backlog = backlog;
                    var now = time.GetUtcNow();
                    var old = backlog.OldestAt is { } oldest && now - oldest > settings.BacklogAgeAlert;
                    if ((backlog.Total > settings.BacklogAlert || old) && state.IsLeader && now >= nextAlert)
                    {
                        nextAlert = now + AlertInterval;
                        Log.BacklogAlert(logger, sink.Name, backlog.Total, settings.BacklogAlert, backlog.OldestAt, settings.BacklogAgeAlert);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // The last figure stays on /ready; the relay loop reports the store's failure itself.
                Log.BacklogUnknown(logger, sink.Name, ex.Message);
            }

            await Task.Delay(BacklogInterval, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task RunAsync(IEventSink sink, IReadOnlyList<string> sinkNames, CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var state = status.For(sink.Name);
        metrics.StartEventSink(sink.Name);
        var builder = new EventRecordBuilder(store, devices, settings.Notifications, time, sink.WantsNotifications);
        var backoff = TimeSpan.FromSeconds(1);
        var renewAt = DateTimeOffset.MinValue;
        var heldUntil = DateTimeOffset.MinValue;
        RelayLease? lease = null;
        var nextPrune = DateTimeOffset.MinValue;
        // Rows a pass reads: BatchSize, or after a pass cut short by MaxBatchRecords about twice what it kept (reading 500
        // rows to publish 20 again and again would read the backlog 25 times over), doubling back while passes are not cut.
        var readLimit = settings.BatchSize;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!storage.IsReady)
                {
                    await Task.Delay(settings.PollInterval, time, stoppingToken);
                    continue;
                }

                var now = time.GetUtcNow();
                // Renewed once a third of it has run: a write every few seconds, not one per pass.
                if (lease is null || now >= renewAt)
                {
                    var taken = await store.TakeRelayLeaseAsync(sink.Name, _owner, now, settings.LeaseDuration, stoppingToken);
                    if (taken is null)
                    {
                        if (lease is not null)
                        {
                            Log.LeaseLost(logger, sink.Name);
                        }

                        lease = null;
                        state.IsLeader = false;
                        // Another instance publishes: this one's last failure says nothing about the stream any more.
                        state.LastFailure = null;
                        await Task.Delay(Min(settings.LeaseDuration / 3, TimeSpan.FromSeconds(5)), time, stoppingToken);
                        continue;
                    }

                    if (lease is null)
                    {
                        Log.LeaseTaken(logger, sink.Name, taken.Pos, taken.ReceiptPos);
                    }

                    // Positions as stored: after a takeover, where the last owner's recording left them.
                    lease = taken;
                    renewAt = now + settings.LeaseDuration / 3;
                    heldUntil = now + settings.LeaseDuration;
                    state.IsLeader = true;
                    if (time.GetUtcNow() + settings.LeaseDuration / 3 >= heldUntil - settings.LeaseDuration / 5)
                    {
                        // The store answered so late that the pass's first renewal (a third of the lease after it starts)
                        // would come after its deadline (RenewingAsync): another instance could take the lease while this one
                        // publishes. Renew first, and say so while it lasts.
                        state.LastFailure = $"The store answers the lease of {sink.Name} too slowly to renew it in time during a pass (Events:LeaseDuration {settings.LeaseDuration}); nothing is published meanwhile.";
                        renewAt = DateTimeOffset.MinValue;
                        continue;
                    }
                }

                // Read, build and publish with the lease renewed beside them: reading and building a large batch on a busy
                // database may take longer than the lease has left, and another instance would then publish it too.
                var from = lease;
                var limit = readLimit;
                var (batch, records, cut) = await RenewingAsync<(OutboxBatch, IReadOnlyList<EventRecord>, bool)>(sink, heldUntil, async cancellationToken =>
                {
                    var read = await store.ReadOutboxAsync(from.Pos, from.ReceiptPos, limit, cancellationToken);
                    if (read.IsEmpty)
                    {
                        return (read, [], false);
                    }

                    var (bounded, cut) = builder.Bounded(read, settings.MaxBatchRecords, from.ReceiptPos);
                    var built = await builder.BuildAsync(bounded, cancellationToken);
                    await sink.PublishAsync(built, cancellationToken);
                    return (bounded, built, cut);
                }, stoppingToken);
                if (!batch.IsEmpty)
                {
                    if (!await store.RecordRelayPositionAsync(sink.Name, _owner, batch.UptoPos, batch.UptoReceiptPos, time.GetUtcNow(), stoppingToken))
                    {
                        Log.LeaseLost(logger, sink.Name);
                        lease = null;
                        state.IsLeader = false;
                        continue;
                    }

                    lease = lease with { Pos = batch.UptoPos, ReceiptPos = batch.UptoReceiptPos };
                    metrics.EventsPublished(sink.Name, records.Count);
                    if (state.LastFailure is not null)
                    {
                        Log.Recovered(logger, sink.Name);
                    }
                }

                state.LastFailure = null;
                backoff = TimeSpan.FromSeconds(1);
                if (time.GetUtcNow() >= nextPrune)
                {
                    // Receipts every sink has published are of no further use (the leader of each sink prunes). On a
                    // schedule, busy or idle; again at the next pass while a full chunk was deleted, so it keeps up.
                    var pruned = await store.PruneReceiptLogAsync(sinkNames, time.GetUtcNow() - settings.RemovedSinkAfter, PruneChunk, stoppingToken);
                    nextPrune = pruned < PruneChunk ? time.GetUtcNow() + PruneInterval : DateTimeOffset.MinValue;
                }

                var carried = batch.Changes.Count + batch.WatermarkMoves.Count;
                readLimit = cut ? Math.Clamp(2 * carried, 1, settings.BatchSize) : Math.Min(settings.BatchSize, 2 * limit);
                if (!cut && carried < limit)
                {
                    // Idle or caught up: let the next batch gather for a poll interval instead of reading, publishing and
                    // recording (a write transaction) the few events of the last milliseconds, pass after pass.
                    await Task.Delay(settings.PollInterval, time, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // Whatever failed, the relay goes on after a pause: the stream must never stop the server (an unhandled
                // exception in a hosted service would), and the recorded positions make a retry safe.
                metrics.EventPublishFailed(sink.Name);
                state.LastFailure = ex is EventSinkException or LeaseLostException || StorageSetup.IsTransient(ex) ? ex.Message : $"{ex.GetType().Name}: {ex.Message}";
                Log.PassFailed(logger, sink.Name, state.LastFailure, backoff.TotalSeconds);
                if (ex is LeaseLostException)
                {
                    lease = null;
                    state.IsLeader = false;
                }

                await Task.Delay(backoff, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                backoff = Min(backoff * 2, MaxBackoff);
                // Re-read the recorded positions before the next try: the failed batch goes again, from there.
                renewAt = DateTimeOffset.MinValue;
            }
        }

        if (lease is not null)
        {
            // A graceful stop hands the sink over at once instead of after the lease ran out.
            try
            {
                await store.ReleaseRelayLeaseAsync(sink.Name, _owner, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ReleaseFailed(logger, sink.Name, ex.Message);
            }
        }
    }

    /// <summary>
    /// Runs a pass's work while renewing the lease beside it; a lease that cannot be renewed abandons the work, and so does
    /// a renewal that has not answered shortly before the lease (held until <paramref name="heldUntil"/>) runs out: another
    /// instance may take the sink over then, and two passes must never publish beside each other.
    /// </summary>
    private async Task<T> RenewingAsync<T>(
        IEventSink sink, DateTimeOffset heldUntil, Func<CancellationToken, Task<T>> work,
        CancellationToken stoppingToken)
    {
        var settings = options.Value;
        using var publishing = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var pass = work(publishing.Token);
        while (true)
        {
            var renewAt = Task.Delay(settings.LeaseDuration / 3, time, publishing.Token);
            if (await Task.WhenAny(pass, renewAt) == pass)
            {
                await publishing.CancelAsync();
                return await pass;
            }

            bool renewed;
            try
            {
                var asked = time.GetUtcNow();
                var renewal = store.TakeRelayLeaseAsync(sink.Name, _owner, asked, settings.LeaseDuration, stoppingToken);
                // A fifth of the lease to spare: another instance whose clock runs ahead by less than that cannot take it first.
                var deadline = heldUntil - settings.LeaseDuration / 5 - asked;
                using var waiting = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                if (await Task.WhenAny(renewal, Task.Delay(deadline > TimeSpan.Zero ? deadline : TimeSpan.Zero, time, waiting.Token)) != renewal)
                {
                    // Observed when it ends, whatever it ends with: the pass does not wait for it.
                    _ = renewal.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
                    stoppingToken.ThrowIfCancellationRequested();
                    throw new LeaseLostException($"The lease of {sink.Name} could not be renewed before it ran out.");
                }

                await waiting.CancelAsync();
                renewed = await renewal is not null;
                if (renewed)
                {
                    heldUntil = asked + settings.LeaseDuration;
                }
            }
            catch
            {
                // Unknown whether the lease still holds: this pass must not go on beside the next one's (or another
                // instance's) publish of the same records.
                await publishing.CancelAsync();
                await ((Task)pass).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                throw;
            }

            if (!renewed)
            {
                await publishing.CancelAsync();
                await ((Task)pass).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                throw new LeaseLostException($"The lease of {sink.Name} was taken over during a pass.");
            }
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private sealed class LeaseLostException(string message) : Exception(message);

    private static partial class Log
    {
        [LoggerMessage(EventId = 7101, Level = LogLevel.Information, Message = "Event relay for {Sink} active on this instance from position {Pos} (receipts {ReceiptPos})")]
        public static partial void LeaseTaken(ILogger logger, string sink, long pos, long receiptPos);

        [LoggerMessage(EventId = 7102, Level = LogLevel.Warning, Message = "Event relay for {Sink} lost its lease to another instance")]
        public static partial void LeaseLost(ILogger logger, string sink);

        [LoggerMessage(EventId = 7103, Level = LogLevel.Warning, Message = "Event relay for {Sink}: pass failed ({Reason}); retrying in {DelaySeconds} s")]
        public static partial void PassFailed(ILogger logger, string sink, string reason, double delaySeconds);

        [LoggerMessage(EventId = 7104, Level = LogLevel.Information, Message = "Event relay for {Sink} publishes again")]
        public static partial void Recovered(ILogger logger, string sink);

        [LoggerMessage(EventId = 7105, Level = LogLevel.Warning, Message = "Event stream backlog for {Sink} is {Backlog} (Events:BacklogAlert {Bound}); oldest waiting since {OldestAt} (Events:BacklogAgeAlert {AgeBound})")]
        public static partial void BacklogAlert(ILogger logger, string sink, long backlog, long bound, DateTimeOffset? oldestAt, TimeSpan ageBound);

        [LoggerMessage(EventId = 7106, Level = LogLevel.Warning, Message = "Event relay for {Sink} could not release its lease: {Reason}")]
        public static partial void ReleaseFailed(ILogger logger, string sink, string reason);

        [LoggerMessage(EventId = 7107, Level = LogLevel.Debug, Message = "Event stream backlog for {Sink} could not be measured: {Reason}")]
        public static partial void BacklogUnknown(ILogger logger, string sink, string reason);
    }
}

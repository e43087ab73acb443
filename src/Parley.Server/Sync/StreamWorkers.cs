using Microsoft.Extensions.Options;
using Parley.Server.Observability;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// The stream sequencer: gives committed events their stream positions, a batch at a time. Every instance
/// runs one; the store lets one at a time work (on PostgreSQL a transaction-scoped advisory lock), so a
/// crashed instance's role is taken over at the next pass of another. Each pass is reported to the metrics (the lag
/// gauge is the time since a pass last left nothing waiting: cheap to read, no count query on a scrape).
/// </summary>
internal sealed partial class StreamSequencer(
    IChatStore store, StorageState storage, IOptions<DeliveryOptions> options, TimeProvider time, ParleyMetrics metrics, ILogger<StreamSequencer> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var positioned = 0;
                if (storage.IsReady)
                {
                    positioned = await store.AssignPositionsAsync(settings.SequencerBatch, stoppingToken);
                    metrics.RecordSequencerPass(positioned, settings.SequencerBatch);
                }

                if (positioned < settings.SequencerBatch)
                {
                    await Task.Delay(settings.SequencerInterval, time, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // Storage errors are expected now and then; anything else is a bug, logged with its stack. Either way the
                // sequencer goes on after a pause: an exception escaping a hosted service would stop the whole server.
                if (ex is System.Data.Common.DbException or TimeoutException or InvalidOperationException)
                {
                    Log.Failed(logger, ex.Message);
                }
                else
                {
                    Log.FailedUnexpectedly(logger, ex);
                }

                await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "Stream sequencer pass failed: {Reason}; retrying")]
        public static partial void Failed(ILogger logger, string reason);

        [LoggerMessage(EventId = 6103, Level = LogLevel.Error, Message = "Stream sequencer pass failed unexpectedly; retrying")]
        public static partial void FailedUnexpectedly(ILogger logger, Exception exception);
    }
}

/// <summary>This instance's sockets that follow the delivery protocol, for the cursor ticker (registered by the socket endpoint).</summary>
internal sealed class SocketDeliveries
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<SocketDelivery, byte> _sockets = new();

    public void Add(SocketDelivery socket) => _sockets.TryAdd(socket, 0);

    public void Remove(SocketDelivery socket) => _sockets.TryRemove(socket, out _);

    /// <summary>A snapshot.</summary>
    public IReadOnlyCollection<SocketDelivery> All() => _sockets.Keys.ToArray();
}

/// <summary>
/// Every <see cref="DeliveryOptions.CursorInterval"/>, offers a fresh cursor to the sockets that received sequenced events.
/// A check that fails for a reason the advancer does not expect is logged as an error and tried again on the next tick:
/// one socket's failure neither stops the cursors of every other socket on the instance nor the instance itself.
/// </summary>
internal sealed partial class CursorTicker(
    SocketDeliveries sockets, CursorAdvancer cursors, IOptions<DeliveryOptions> options, TimeProvider time, ILogger<CursorTicker> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(options.Value.CursorInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            foreach (var socket in sockets.All())
            {
                if (!socket.Cursors.Due)
                {
                    continue;
                }

                try
                {
                    await cursors.TryAdvanceAsync(socket, stoppingToken);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    socket.Cursors.SentSinceCursor = true; // the next tick tries again
                    Log.CheckFailed(logger, socket.Connection.Id, ex);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6102, Level = LogLevel.Error, Message = "Connection {ConnectionId}: cursor check failed unexpectedly; retrying on the next tick")]
        public static partial void CheckFailed(ILogger logger, string connectionId, Exception exception);
    }
}

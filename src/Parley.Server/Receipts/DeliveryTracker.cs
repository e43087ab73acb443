using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Receipts;

/// <summary>
/// Records that users received messages: reports from devices (a frame written to a socket, or an <c>ack</c>)
/// are coalesced per (conversation, user) to the highest seq and written in one transaction every
/// <see cref="RealtimeOptions.DeliveryFlushInterval"/>; then senders get <c>message_delivered</c>.
/// Pending reports are bounded by the number of (conversation, user) pairs, not by traffic. If the store
/// fails, reports are kept and retried; a crash loses at most the reports of one interval (delivered
/// watermarks only: never a message or a read receipt). A receipt whose frames fail to go out after the commit is
/// logged as an error (4002) and the tracker goes on; its senders' devices get the watermark at their next resume.
/// </summary>
internal sealed partial class DeliveryTracker(
    IChatStore store, ConversationBroadcaster broadcaster, TimeProvider time, IOptions<RealtimeOptions> options, ILogger<DeliveryTracker> logger)
    : BackgroundService
{
    private readonly ConcurrentDictionary<(Guid ConversationId, string UserId), long> _pending = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public void Report(Guid conversationId, string userId, long upToSeq)
    {
        _pending.AddOrUpdate((conversationId, userId), upToSeq, (_, current) => Math.Max(current, upToSeq));
        _wake.Writer.TryWrite(true);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _wake.Reader.WaitToReadAsync(stoppingToken))
            {
                _wake.Reader.TryRead(out _);
                // Coalescing window: every report of the next interval joins this batch.
                await Task.Delay(options.Value.DeliveryFlushInterval, time, stoppingToken);
                await FlushAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down: StopAsync flushes what is left.
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await FlushAsync(cancellationToken);
    }

    private async Task FlushAsync(CancellationToken cancellationToken)
    {
        var batch = new List<DeliveryReport>();
        foreach (var key in _pending.Keys)
        {
            if (_pending.TryRemove(key, out var seq))
            {
                batch.Add(new DeliveryReport(key.ConversationId, key.UserId, seq));
            }
        }

        if (batch.Count == 0)
        {
            return;
        }

        DeliveredBatch results;
        try
        {
            results = await store.AdvanceDeliveredAsync(batch, time.GetUtcNow(), cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping while the batch waited for its place in the write queue (the only cancellable wait: nothing of it
            // was queued): it goes back, for StopAsync's last flush, instead of being lost with the loop.
            foreach (var report in batch)
            {
                Report(report.ConversationId, report.UserId, report.UpToSeq);
            }

            throw;
        }
        catch (Exception ex)
        {
            ReportAgain(batch, ex);
            return;
        }

        if (results.Failed.Count > 0)
        {
            // Some write lanes failed, the others committed: what failed is reported again, what committed announced.
            ReportAgain(results.Failed, results.Error!);
        }

        // Committed: a receipt whose frames fail to go out is not reported again; the senders' devices get the watermark
        // at their next resume or sync. One failure (a bug: publishing does not fail on the network) skips only its own.
        foreach (var result in results.Moved)
        {
            try
            {
                await broadcaster.WatermarkMovedAsync(result);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.BroadcastFailed(logger, result.ConversationId, ex);
            }
        }
    }

    /// <summary>Reports that could not be recorded: kept for the next flush.</summary>
    private void ReportAgain(IReadOnlyCollection<DeliveryReport> reports, Exception error)
    {
        Log.FlushFailed(logger, reports.Count, error);
        foreach (var report in reports)
        {
            Report(report.ConversationId, report.UserId, report.UpToSeq);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Could not record {Count} delivery reports; will retry")]
        public static partial void FlushFailed(ILogger logger, int count, Exception exception);

        [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Could not send the delivered receipt of conversation {ConversationId}")]
        public static partial void BroadcastFailed(ILogger logger, Guid conversationId, Exception exception);
    }
}

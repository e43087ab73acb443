using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Parley.Client.Realtime;

/// <summary>Reads one page of <c>GET /api/v1/sync</c> (<see cref="ParleyClient.SyncAsync"/>; tests replace it).</summary>
internal delegate Task<SyncPage> SyncPageReader(string cursor, int limit, CancellationToken cancellationToken);

/// <summary>What a failed sync means for the gap filler.</summary>
internal enum GapFillFailure
{
    /// <summary>410, or the cursor refused: the position cannot be resumed (rule 7): reset, and reconnect without a cursor.</summary>
    CursorRejected,

    /// <summary>404: the server has no sync endpoint; nothing can fill the gaps, so they are skipped.</summary>
    CannotFill,

    /// <summary>Passing (network, 5xx, a timeout, a page that could not be read): try again after a back-off.</summary>
    Retry,
}

/// <summary>
/// Rule 2's "fetch the missing positions" (docs/client.md, "Gaps"): when woken and a gap is open while the socket
/// is live and not catching up (a catch-up in progress fills gaps by itself), reads <c>GET /api/v1/sync</c> from
/// the newest cursor, page by page, and retries with back-off (<see cref="RetryInitial"/> to
/// <see cref="RetryMax"/>) while the gap stays open: an event may not have a stream position yet for a few tens
/// of milliseconds.
/// </summary>
/// <remarks>
/// Concurrency: one loop (<see cref="RunAsync"/>); its only state is the attempt count, a local. What it reads
/// goes through the <see cref="DeliveryTracker"/> (under its lock), and it waits for room in the
/// <see cref="EventQueue"/> before each page, like the receive loop before each frame.
/// </remarks>
internal sealed class GapFiller(
    DeliveryTracker delivery,
    EventQueue events,
    SyncPageReader sync,
    int pageSize,
    Action restartSocket,
    TimeProvider time,
    ILogger logger)
{
    public static readonly TimeSpan RetryInitial = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan RetryMax = TimeSpan.FromSeconds(5);

    private readonly Signal _wake = new();

    /// <summary>A gap may need filling: a buffered event outside a catch-up, or the socket became live.</summary>
    public void Wake() => _wake.Set();

    /// <summary>What a sync failure means; null for a failure no one expects (it fails the connection).</summary>
    public static GapFillFailure? Classify(Exception error) => error switch
    {
        ParleyApiException e when e.StatusCode == HttpStatusCode.Gone || e.Code is ParleyErrorCodes.InvalidCursor or ParleyErrorCodes.CursorExpired
            => GapFillFailure.CursorRejected,
        ParleyApiException { StatusCode: HttpStatusCode.NotFound } => GapFillFailure.CannotFill,
        ParleyApiException or HttpRequestException or JsonException or IOException or TaskCanceledException => GapFillFailure.Retry,
        _ => null,
    };

    public async Task RunAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }

            for (var attempt = 0; !stopping.IsCancellationRequested; attempt++)
            {
                var fill = delivery.NextFill();
                if (fill.Kind == GapFillKind.Skipped)
                {
                    // A server without cursors cannot fill gaps: what came was applied, in order.
                    ParleyRealtime.Log.GapsSkipped(logger, fill.Skipped, "the server gave no cursor");
                }

                if (fill.Kind != GapFillKind.FromCursor)
                {
                    break;
                }

                try
                {
                    await SyncFromAsync(fill.Cursor!, fill.CursorVersion, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (Classify(ex) is { } failure)
                {
                    if (failure == GapFillFailure.CursorRejected)
                    {
                        OnCursorRejected((ParleyApiException)ex);
                        break;
                    }

                    if (failure == GapFillFailure.CannotFill)
                    {
                        ParleyRealtime.Log.GapsSkipped(logger, delivery.SkipGaps(), "the server has no sync endpoint");
                        break;
                    }

                    ParleyRealtime.Log.GapFillFailed(logger, ex.Message);
                }

                if (!delivery.HasGaps)
                {
                    break;
                }

                try
                {
                    await Task.Delay(Backoff.Delay(attempt, RetryInitial, RetryMax, Random.Shared.NextDouble()), time, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    private async Task SyncFromAsync(string cursor, long cursorVersion, CancellationToken cancellationToken)
    {
        var next = cursor;
        var synced = new Dictionary<Guid, long>();
        while (true)
        {
            await events.WaitForRoomAsync(cancellationToken);
            var page = await sync(next, pageSize, cancellationToken);
            delivery.ApplySyncPage(page, synced, cursorVersion);
            if (!page.HasMore)
            {
                return;
            }

            next = page.NextCursor;
        }
    }

    /// <summary>REST refused the cursor (410 or malformed): reload (rule 7) and reconnect without one, from the current position.</summary>
    private void OnCursorRejected(ParleyApiException error)
    {
        ParleyRealtime.Log.SyncReset(logger, error.Code);
        delivery.ResetOnNextConnect(error.Code);
        restartSocket();
    }
}

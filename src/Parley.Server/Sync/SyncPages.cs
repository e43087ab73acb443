using System.Globalization;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>REST sync (<c>GET /api/v1/sync</c>): pages of the events a device missed after its cursor.</summary>
internal sealed class SyncPages(IChatStore store, StreamCursors cursors, EventFrameBuilder frames, TimeProvider time)
{
    public const int DefaultPageSize = 200;
    public const int MaxPageSize = 1000;

    /// <summary>How many events committed but not positioned yet the last page looks at before sending watermarks.</summary>
    private const int UnpositionedCheckLimit = 1000;

    public async Task<Result<SyncPage>> ReadPageAsync(Caller caller, string? cursorText, string? limitText, CancellationToken cancellationToken)
    {
        var limit = DefaultPageSize;
        if (limitText is not null && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxPageSize))
        {
            return ApiError.Invalid("limit", $"'limit' must be an integer from 1 to {MaxPageSize}.");
        }

        if (cursorText is null)
        {
            return new ApiError(400, ErrorCodes.InvalidCursor, "'cursor' is required (GET /api/v1/sync/cursor gives the current one).");
        }

        var validated = await cursors.ValidateAsync(cursorText, cancellationToken);
        if (!validated.IsSuccess)
        {
            return validated.Error!;
        }

        var cursor = validated.Value!;
        var upto = await store.GetStreamPositionAsync(cancellationToken);
        var events = await store.ReadUserEventsAsync(caller.UserId, cursor.Pos, upto.Pos, limit + 1, cancellationToken);
        var hasMore = events.Count > limit;
        var page = hasMore ? events.Take(limit).ToList() : events;
        var built = await frames.BuildFramesAsync(caller.UserId, page, cancellationToken);

        // Watermarks come with the last page: until then the next cursor keeps the time they are replayed from.
        var next = hasMore ? StreamCursors.At(cursor.Epoch, page[^1], cursor.IssuedAt) : Cursor.At(cursor.Epoch, upto.Pos, upto.Last, time.GetUtcNow());
        var watermarks = hasMore ? [] : await frames.WatermarkFramesAsync(caller.UserId, cursor.IssuedAt, cancellationToken);
        if (watermarks.Count > 0)
        {
            // Except one naming a message this page did not reach: committed after the events were read, or not
            // positioned yet (PostgreSQL's sequencer numbers events just after their commit). Read after the watermarks,
            // the events past the page include every such message, so its receipt waits for the later page that carries
            // it; the next cursor keeps the replay time, and the watermarks come again then (a repeat is harmless).
            var unpositioned = await store.ReadUserEventsNewerAsync(caller.UserId, upto.Pos, after: null, UnpositionedCheckLimit, cancellationToken);
            var later = unpositioned.Select(e => (e.Event.ConversationId, e.Event.Seq)).ToHashSet();
            var unsure = unpositioned.Count == UnpositionedCheckLimit;
            if (unsure || watermarks.Exists(w => later.Contains((w.ConversationId, w.UpToSeq))))
            {
                next = Cursor.At(cursor.Epoch, upto.Pos, upto.Last, cursor.IssuedAt);
                watermarks = unsure ? [] : watermarks.FindAll(w => !later.Contains((w.ConversationId, w.UpToSeq)));
            }

            built.AddRange(watermarks.Select(w => w.Frame));
        }

        return new SyncPage(built.Select(f => new RawFrame(f.Utf8)).ToList(), next.Encode(), hasMore);
    }
}

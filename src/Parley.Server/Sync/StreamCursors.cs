using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>Cursors: the current one, and whether a presented one can be resumed (docs/delivery.md).</summary>
internal sealed class StreamCursors(IChatStore store, IOptions<DeliveryOptions> options, TimeProvider time)
{
    public async Task<Cursor> CurrentAsync(CancellationToken cancellationToken)
    {
        var position = await store.GetStreamPositionAsync(cancellationToken);
        return Cursor.At(position.Epoch, position.Pos, position.Last, time.GetUtcNow());
    }

    /// <summary>400 <c>invalid_cursor</c> for a string that is not a cursor, 410 <c>cursor_expired</c> for one that cannot be resumed.</summary>
    public async Task<Result<Cursor>> ValidateAsync(string? text, CancellationToken cancellationToken)
    {
        if (!Cursor.TryDecode(text, out var cursor))
        {
            return new ApiError(400, ErrorCodes.InvalidCursor, "'cursor' is not a cursor issued by this server.");
        }

        var position = await store.GetStreamPositionAsync(cancellationToken);
        if (cursor!.Epoch != position.Epoch)
        {
            return new ApiError(410, ErrorCodes.CursorExpired, "The cursor belongs to another deployment (or a reset database); reload and start from a fresh cursor.");
        }

        // As an age: "now - retention" is before the first date .NET has for the longest retentions the setting allows.
        if (time.GetUtcNow() - cursor.IssuedAt > options.Value.CursorRetention)
        {
            return new ApiError(410, ErrorCodes.CursorExpired, "The cursor is older than the retention; reload and start from a fresh cursor.");
        }

        // A database restored from an earlier copy keeps its epoch, and a device may be ahead of it: its cursor is
        // beyond the stream, or the stream holds another event at the cursor's position (the restored stream grew
        // again). Either way the device holds events this stream does not: it must reload, not skip them.
        if (cursor.Pos > position.Pos
            || !cursor.Matches(cursor.Pos == position.Pos ? position.Last : await store.GetEventAtPositionAsync(cursor.Pos, cancellationToken)))
        {
            return new ApiError(410, ErrorCodes.CursorExpired, RestoredMessage);
        }

        return cursor;
    }

    private const string RestoredMessage =
        "The cursor is ahead of this server's event stream (the database was restored from an earlier state); reload and start from a fresh cursor.";

    /// <summary>The event a cursor ends at, for its fingerprint.</summary>
    public static EventKey Key(UserEvent e) => new(e.Event.ConversationId, e.Event.Seq, e.Event.CreatedAt);

    /// <summary>A cursor just after a read event (its position is known: it was read by position).</summary>
    public static Cursor At(Guid epoch, UserEvent e, DateTimeOffset issuedAt) => Cursor.At(epoch, e.Pos!.Value, Key(e), issuedAt);
}

using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Realtime;
using Parley.Server.Realtime.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>A page of REST catch-up: the same frames the socket carries, in the same order.</summary>
internal sealed record SyncPage(IReadOnlyList<JsonElement> Events, string NextCursor, bool HasMore);

internal sealed record CursorResponse(string Cursor);

/// <summary>
/// Cursors, catch-up (WebSocket and REST) and cursor advance: the delivery protocol of docs/delivery.md on top
/// of the store's event stream.
/// </summary>
internal sealed partial class SyncService(IChatStore store, IOptions<DeliveryOptions> options, TimeProvider time, ILogger<SyncService> logger)
{
    public const int DefaultPageSize = 200;
    public const int MaxPageSize = 1000;

    // Receipts carry wall-clock times from several instances: look a little further back than the cursor.
    private static readonly TimeSpan ClockSlack = TimeSpan.FromSeconds(5);

    public async Task<Cursor> CurrentAsync(CancellationToken cancellationToken)
    {
        var position = await store.GetStreamPositionAsync(cancellationToken);
        return new Cursor(position.Epoch, position.Pos, time.GetUtcNow());
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

        if (cursor.IssuedAt < time.GetUtcNow() - options.Value.CursorRetention)
        {
            return new ApiError(410, ErrorCodes.CursorExpired, "The cursor is older than the retention; reload and start from a fresh cursor.");
        }

        return cursor.Pos > position.Pos ? cursor with { Pos = position.Pos } : cursor;
    }

    // ---- REST -----------------------------------------------------------------------------------------

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

        var validated = await ValidateAsync(cursorText, cancellationToken);
        if (!validated.IsSuccess)
        {
            return validated.Error!;
        }

        var cursor = validated.Value!;
        var upto = (await store.GetStreamPositionAsync(cancellationToken)).Pos;
        var events = await store.ReadUserEventsAsync(caller.UserId, cursor.Pos, upto, newerThanUpto: false, limit + 1, cancellationToken);
        var hasMore = events.Count > limit;
        var page = hasMore ? events.Take(limit).ToList() : events;
        var frames = await BuildFramesAsync(page, cancellationToken);
        if (!hasMore)
        {
            frames.AddRange(await WatermarkFramesAsync(caller.UserId, cursor.IssuedAt, cancellationToken));
        }

        var next = new Cursor(cursor.Epoch, hasMore ? page[^1].Pos!.Value : upto, time.GetUtcNow());
        return new SyncPage(frames.Select(f => JsonDocument.Parse(f.Utf8).RootElement.Clone()).ToList(), next.Encode(), hasMore);
    }

    // ---- WebSocket ------------------------------------------------------------------------------------

    /// <summary>
    /// Resumes a socket that holds its live events: sends what the device missed after <paramref name="cursor"/>,
    /// the watermarks that moved, <c>sync_complete</c>, then releases the live events it did not already send.
    /// An expired cursor gets <c>sync_reset</c> instead. A storage failure closes the socket with 1013: the device
    /// retries and nothing is claimed that was not sent.
    /// </summary>
    public async Task CatchUpAsync(Connection connection, Result<Cursor> cursor, CancellationToken cancellationToken)
    {
        var state = connection.Cursors;
        state.Enabled = true;
        state.CatchingUp = true;
        try
        {
            if (!cursor.IsSuccess)
            {
                var fresh = await CurrentAsync(cancellationToken);
                await connection.EnqueueAsync(Frames.SyncReset(fresh.Encode(), cursor.Error!.Message), cancellationToken);
                state.Pos = fresh.Pos;
                connection.Release();
                return;
            }

            var sent = new Dictionary<Guid, long>();
            var from = cursor.Value!;
            var upto = await store.GetStreamPositionAsync(cancellationToken);
            var after = from.Pos;
            var pageSize = options.Value.CatchUpPage;
            while (true)
            {
                var page = await store.ReadUserEventsAsync(connection.UserId, after, upto.Pos, newerThanUpto: false, pageSize, cancellationToken);
                await SendAsync(connection, await BuildFramesAsync(page, cancellationToken), sent, cancellationToken);
                if (page.Count < pageSize)
                {
                    break;
                }

                after = page[^1].Pos!.Value;
            }

            // Committed but positioned after the read above (or not yet): the sequencer may lag behind commits.
            var newer = await store.ReadUserEventsAsync(connection.UserId, 0, upto.Pos, newerThanUpto: true, int.MaxValue, cancellationToken);
            await SendAsync(connection, await BuildFramesAsync(newer, cancellationToken), sent, cancellationToken);
            await SendAsync(connection, await WatermarkFramesAsync(connection.UserId, from.IssuedAt, cancellationToken), sent, cancellationToken);

            var complete = new Cursor(upto.Epoch, upto.Pos, time.GetUtcNow());
            await connection.EnqueueAsync(Frames.Cursor(FrameTypes.SyncComplete, complete.Encode()), cancellationToken);
            state.Pos = upto.Pos;
            state.SentSinceCursor = false;
            connection.Release(frame => frame.Seq > 0 && frame.ConversationId is { } c && sent.TryGetValue(c, out var seq) && frame.Seq <= seq);
            Log.CaughtUp(logger, connection.Id, sent.Count, from.Pos, upto.Pos);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The socket closed during the catch-up.
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            Log.CatchUpFailed(logger, connection.Id, ex);
            connection.RequestClose(CloseCodes.TryAgainLater, "storage unavailable; resume again");
        }
        finally
        {
            state.CatchingUp = false;
        }
    }

    /// <summary>
    /// Gives the socket a newer cursor when every event positioned since its last one has been written to it.
    /// Cheap to call often: at most one computation at a time per socket, none while nothing was sent.
    /// </summary>
    public async Task TryAdvanceCursorAsync(Connection connection, CancellationToken cancellationToken)
    {
        var state = connection.Cursors;
        if (!state.Enabled || state.CatchingUp || !state.SentSinceCursor || !state.TryBeginComputing())
        {
            return;
        }

        try
        {
            state.SentSinceCursor = false;
            var upto = await store.GetStreamPositionAsync(cancellationToken);
            var covered = upto.Pos > state.Pos
                ? await store.MaxSeqByConversationAsync(connection.UserId, state.Pos, upto.Pos, cancellationToken)
                : null;
            if (covered is null || covered.Any(c => connection.SentSeq(c.Key) < c.Value))
            {
                // Not positioned yet, or still on its way to this socket: try again later.
                state.SentSinceCursor = true;
                return;
            }

            state.Pos = upto.Pos;
            connection.TryEnqueue(Frames.Cursor(FrameTypes.Cursor, new Cursor(upto.Epoch, upto.Pos, time.GetUtcNow()).Encode()));
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            state.SentSinceCursor = true; // the next tick tries again
            Log.CursorFailed(logger, connection.Id, ex.Message);
        }
        finally
        {
            state.EndComputing();
        }
    }

    private static async Task SendAsync(Connection connection, List<OutboundFrame> frames, Dictionary<Guid, long> sent, CancellationToken cancellationToken)
    {
        foreach (var frame in frames)
        {
            await connection.EnqueueAsync(frame, cancellationToken);
            if (frame.Seq > 0 && frame.ConversationId is { } conversationId)
            {
                sent[conversationId] = Math.Max(sent.GetValueOrDefault(conversationId), frame.Seq);
            }
        }
    }

    /// <summary>The frames of stored events, as the live stream would have sent them to this member.</summary>
    private async Task<List<OutboundFrame>> BuildFramesAsync(IReadOnlyList<UserEvent> events, CancellationToken cancellationToken)
    {
        var frames = new List<OutboundFrame>(events.Count);
        if (events.Count == 0)
        {
            return frames;
        }

        var messages = await store.GetMessagesAsync(
            events.Where(e => e.Event.MessageId is not null).Select(e => e.Event.MessageId!.Value).ToList(), cancellationToken);
        var conversations = new Dictionary<Guid, ConversationSnapshot?>();
        foreach (var (evt, _, joinedSeq) in events)
        {
            switch (evt.Type)
            {
                case EventTypes.ConversationCreated:
                    if (!conversations.TryGetValue(evt.ConversationId, out var snapshot))
                    {
                        conversations[evt.ConversationId] = snapshot = await store.GetConversationAsync(evt.ConversationId, cancellationToken);
                    }

                    frames.Add(EventFrames.ConversationCreated(ConversationViews.ToView(snapshot!, null, null), evt.Seq, evt.CreatedAt));
                    break;
                case EventTypes.MessageCreated:
                    frames.Add(EventFrames.NewMessage(messages[evt.MessageId!.Value], evt.CreatedAt));
                    break;
                case EventTypes.MessageEdited or EventTypes.MessageDeleted:
                    var message = messages[evt.MessageId!.Value];
                    frames.Add(
                        message.Seq <= joinedSeq ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : evt.Type == EventTypes.MessageEdited ? EventFrames.MessageEdited(message, evt.Seq, evt.CreatedAt)
                        : EventFrames.MessageDeleted(message.Id, evt.ConversationId, evt.Seq, evt.ActorId, evt.CreatedAt));
                    break;
                default:
                    frames.Add(EventFrames.Participant(evt));
                    break;
            }
        }

        return frames;
    }

    /// <summary>Current watermarks that moved since <paramref name="since"/>, for messages the user can see.</summary>
    private async Task<List<OutboundFrame>> WatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken)
    {
        var frames = new List<OutboundFrame>();
        var now = time.GetUtcNow();
        foreach (var (conversationId, member, viewerJoinedSeq) in await store.ListMovedWatermarksAsync(userId, since - ClockSlack, cancellationToken))
        {
            if (member.DeliveredMessageId is { } delivered && member.DeliveredSeq > viewerJoinedSeq)
            {
                frames.Add(EventFrames.Receipt(FrameTypes.MessageDelivered, conversationId, member.UserId, delivered, member.DeliveredSeq, now));
            }

            if (member.ReadMessageId is { } read && member.ReadSeq > viewerJoinedSeq)
            {
                frames.Add(EventFrames.Receipt(FrameTypes.MessageRead, conversationId, member.UserId, read, member.ReadSeq, now));
            }
        }

        return frames;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Connection {ConnectionId} caught up {Conversations} conversations from position {From} to {To}")]
        public static partial void CaughtUp(ILogger logger, string connectionId, int conversations, long from, long to);

        [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: catch-up failed; closing with 1013")]
        public static partial void CatchUpFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 6003, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: cursor not advanced: {Reason}")]
        public static partial void CursorFailed(ILogger logger, string connectionId, string reason);
    }
}

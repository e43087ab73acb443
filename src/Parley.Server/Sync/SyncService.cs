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

    // Events checked per cursor computation; a busier socket's cursor advances over the first ones and continues.
    private const int CursorCheckLimit = 2000;

    // Extra cursor checks after the last sent frame while the socket holds events no cursor covers yet.
    private const int MaxRechecks = 3;

    // An event a socket has lacked this long did not reach it live: it is sent by the cursor check.
    private static readonly TimeSpan RepairAfter = TimeSpan.FromSeconds(2);

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

        if (cursor.IssuedAt < time.GetUtcNow() - options.Value.CursorRetention)
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
        var upto = await store.GetStreamPositionAsync(cancellationToken);
        var events = await store.ReadUserEventsAsync(caller.UserId, cursor.Pos, upto.Pos, newerThanUpto: false, limit + 1, cancellationToken);
        var hasMore = events.Count > limit;
        var page = hasMore ? events.Take(limit).ToList() : events;
        var frames = await BuildFramesAsync(page, cancellationToken);
        if (!hasMore)
        {
            frames.AddRange(await WatermarkFramesAsync(caller.UserId, cursor.IssuedAt, cancellationToken));
        }

        // Watermarks come with the last page: until then the next cursor keeps the time they are replayed from.
        var next = hasMore ? At(cursor.Epoch, page[^1], cursor.IssuedAt) : Cursor.At(cursor.Epoch, upto.Pos, upto.Last, time.GetUtcNow());
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
                // Everything up to here is on its way: a catch-up cut short (the socket closed, or it could not keep
                // up) resumes from here next time, not from the start. Watermarks still replay from the old time.
                await connection.EnqueueAsync(Frames.Cursor(FrameTypes.Cursor, At(upto.Epoch, page[^1], from.IssuedAt).Encode()), cancellationToken);
            }

            // Committed but positioned after the read above (or not yet): the sequencer may lag behind commits.
            var newer = await store.ReadUserEventsAsync(connection.UserId, 0, upto.Pos, newerThanUpto: true, int.MaxValue, cancellationToken);
            await SendAsync(connection, await BuildFramesAsync(newer, cancellationToken), sent, cancellationToken);
            await SendAsync(connection, await WatermarkFramesAsync(connection.UserId, from.IssuedAt, cancellationToken), sent, cancellationToken);

            var complete = Cursor.At(upto.Epoch, upto.Pos, upto.Last, time.GetUtcNow());
            await connection.EnqueueAsync(Frames.Cursor(FrameTypes.SyncComplete, complete.Encode()), cancellationToken);
            state.Pos = upto.Pos;
            state.SentSinceCursor = false;
            foreach (var (conversationId, seq) in sent)
            {
                // The device had everything up to its cursor, and the catch-up sent every later event.
                connection.Sent.Confirm(conversationId, seq);
            }

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
    /// Gives the socket a newer cursor up to the last position before which every event the device may see was
    /// written to it, and sends the device the events it should have received live but did not (written on
    /// another instance, or a fan-out message lost): a cursor never claims an event the socket was not given.
    /// Cheap to call often: at most one computation at a time per socket, none while nothing was sent.
    /// </summary>
    public async Task TryAdvanceCursorAsync(Connection connection, CancellationToken cancellationToken)
    {
        var state = connection.Cursors;
        if (!state.Due || !state.TryBeginComputing())
        {
            return;
        }

        try
        {
            if (!state.Due)
            {
                return; // a resume began meanwhile
            }

            if (state.SentSinceCursor)
            {
                state.RecheckBudget = MaxRechecks;
            }

            state.SentSinceCursor = false;
            state.Recheck = false;
            var upto = await store.GetStreamPositionAsync(cancellationToken);
            if (upto.Pos <= state.Pos)
            {
                // Sent frames whose events are not positioned yet: try again later.
                state.SentSinceCursor = true;
                return;
            }

            var events = await store.ReadUserEventsAsync(connection.UserId, state.Pos, upto.Pos, newerThanUpto: false, CursorCheckLimit + 1, cancellationToken);
            var complete = events.Count <= CursorCheckLimit;
            var safe = state.Pos;
            EventKey? safeEvent = null;
            var covered = new Dictionary<Guid, long>();
            var missing = new List<UserEvent>();
            foreach (var e in events.Take(CursorCheckLimit))
            {
                if (!connection.Sent.Holds(e.Event.ConversationId, e.Event.Seq))
                {
                    missing.Add(e);
                }
                else if (missing.Count == 0)
                {
                    safe = e.Pos!.Value;
                    safeEvent = Key(e);
                    covered[e.Event.ConversationId] = e.Event.Seq;
                }
            }

            if (missing.Count == 0 && complete)
            {
                safe = upto.Pos;
                safeEvent = upto.Last;
            }

            // Live delivery happens right after the commit: an event this socket has lacked for a while (by this
            // server's clock, across checks) never reached it live; send it now (the device de-duplicates by seq if
            // it was merely late), no more than half the queue's free room at a time.
            var now = time.GetTimestamp();
            var missingSince = new Dictionary<(Guid, long), long>();
            var repair = new List<UserEvent>();
            foreach (var e in missing)
            {
                var key = (e.Event.ConversationId, e.Event.Seq);
                var since = state.MissingSince.TryGetValue(key, out var first) ? first : now;
                missingSince[key] = since;
                if (time.GetElapsedTime(since, now) >= RepairAfter && repair.Count < connection.QueueRoom / 2)
                {
                    repair.Add(e);
                }
            }

            state.MissingSince = missingSince;
            foreach (var frame in await BuildFramesAsync(repair, cancellationToken))
            {
                connection.TryEnqueue(frame.AsRedelivery());
            }

            if (repair.Count > 0)
            {
                Log.Repaired(logger, connection.Id, repair.Count);
            }

            if (missing.Count > 0 || !complete)
            {
                state.SentSinceCursor = true; // the rest on a later check
            }

            if (safe > state.Pos)
            {
                foreach (var (conversationId, seq) in covered)
                {
                    connection.Sent.Confirm(conversationId, seq);
                }

                state.Pos = safe;
                state.Offer(connection, Frames.Cursor(FrameTypes.Cursor, Cursor.At(upto.Epoch, safe, safeEvent, time.GetUtcNow()).Encode()));
            }

            // Events the socket holds that no cursor covers yet (not positioned when the range was read): look
            // again on the next ticks, a few times, so the device's cursor catches up without further traffic.
            if (!state.SentSinceCursor && connection.Sent.HasUnconfirmed && state.RecheckBudget > 0)
            {
                state.RecheckBudget--;
                state.Recheck = true;
            }
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

    private static EventKey Key(UserEvent e) => new(e.Event.ConversationId, e.Event.Seq, e.Event.CreatedAt);

    /// <summary>A cursor just after a read event (its position is known: it was read by position).</summary>
    private static Cursor At(Guid epoch, UserEvent e, DateTimeOffset issuedAt) => Cursor.At(epoch, e.Pos!.Value, Key(e), issuedAt);

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

    /// <summary>
    /// The frames of stored events, as the live stream would have sent them to this member. A former member's
    /// events (its window ends at its removal) show the conversation and its messages as they were when the
    /// membership ended: nothing that happened after it leaks through a replay.
    /// </summary>
    private async Task<List<OutboundFrame>> BuildFramesAsync(IReadOnlyList<UserEvent> events, CancellationToken cancellationToken)
    {
        var frames = new List<OutboundFrame>(events.Count);
        if (events.Count == 0)
        {
            return frames;
        }

        var current = events.Where(e => e.LeftSeq is null && e.Event.MessageId is not null).Select(e => e.Event.MessageId!.Value).ToList();
        var messages = new Dictionary<Guid, Message?>();
        foreach (var (id, message) in current.Count == 0 ? new Dictionary<Guid, Message>() : await store.GetMessagesAsync(current, cancellationToken))
        {
            messages[id] = message;
        }

        var asOf = new Dictionary<Guid, IReadOnlyDictionary<Guid, Message?>>();
        foreach (var former in events.Where(e => e.LeftSeq is not null && e.Event.MessageId is not null).GroupBy(e => (e.Event.ConversationId, e.LeftSeq!.Value)))
        {
            asOf[former.Key.ConversationId] = await store.GetMessagesAsOfAsync(
                former.Key.ConversationId, former.Key.Value, former.Select(e => e.Event.MessageId!.Value).ToList(), cancellationToken);
        }

        var conversations = new Dictionary<Guid, Conversation?>();
        foreach (var (evt, _, joinedSeq, leftSeq) in events)
        {
            var message = evt.MessageId is { } messageId
                ? (leftSeq is null ? messages : asOf[evt.ConversationId]).GetValueOrDefault(messageId)
                : null;
            switch (evt.Type)
            {
                case EventTypes.ConversationCreated:
                    if (!conversations.TryGetValue(evt.ConversationId, out var conversation))
                    {
                        conversations[evt.ConversationId] = conversation = leftSeq is { } endedAt
                            ? await store.GetConversationAsOfAsync(evt.ConversationId, endedAt, cancellationToken) is { } then
                                ? ConversationViews.ToView(then)
                                : null
                            : await store.GetConversationAsync(evt.ConversationId, cancellationToken) is { } snapshot
                                ? ConversationViews.ToView(snapshot, null, null)
                                : null;
                    }

                    frames.Add(conversation is null
                        ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : EventFrames.ConversationCreated(conversation, evt.Seq, evt.CreatedAt));
                    break;
                case EventTypes.MessageCreated:
                    // A former member's message deleted after the membership ended: its content is gone, and the
                    // deletion is not the former member's to learn; the position is filled without content.
                    frames.Add(message is null
                        ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : EventFrames.NewMessage(message, evt.CreatedAt));
                    break;
                case EventTypes.MessageEdited or EventTypes.MessageDeleted:
                    frames.Add(
                        message is null || message.Seq <= joinedSeq ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
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

        [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Connection {ConnectionId}: sent {Count} events it had not received live")]
        public static partial void Repaired(ILogger logger, string connectionId, int count);
    }
}

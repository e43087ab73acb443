using System.Data.Common;
using Microsoft.Extensions.Options;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// Cursors while connected (docs/delivery.md, "Cursors while connected"): advances a socket's cursor over what it
/// was given, and sends it the events it should have had live but lacks.
/// </summary>
internal sealed partial class CursorAdvancer(
    IChatStore store, EventFrameBuilder frames, TimeProvider time, IOptions<DeliveryOptions> options, ILogger<CursorAdvancer> logger)
{
    // Events checked per cursor computation; a busier socket's cursor advances over the first ones and continues.
    private const int CursorCheckLimit = 2000;

    // Extra cursor checks after the last sent frame while the socket holds events no cursor covers yet.
    private const int MaxRechecks = 3;

    // An event a socket has lacked this long did not reach it live: it is sent by the cursor check.
    private static readonly TimeSpan RepairAfter = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A socket acknowledged: it follows cursors from now on, and gets a fresh one at once the first time, then at most
    /// once per <see cref="DeliveryOptions.CursorInterval"/> (the ticker's pace). Replying to every ack within a second
    /// cost a busy server a cursor check and a frame per acknowledging socket a second, for a resume point a few
    /// seconds fresher.
    /// </summary>
    public Task AcknowledgedAsync(SocketDelivery socket, CancellationToken cancellationToken)
    {
        var state = socket.Cursors;
        state.Enabled = true;
        if (!state.Due)
        {
            // Nothing to check (nothing written since the last cursor, or a catch-up runs): no check, so none counts
            // towards the pace either, and the next ack after something was written gets its cursor at once.
            return Task.CompletedTask;
        }

        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref state.LastCheckTicks);
        if (last != 0 && time.GetElapsedTime(last, now) < options.Value.CursorInterval)
        {
            return Task.CompletedTask;
        }

        Interlocked.Exchange(ref state.LastCheckTicks, now);
        return TryAdvanceAsync(socket, cancellationToken);
    }

    /// <summary>
    /// Gives the socket a newer cursor up to the last position before which every event the device may see was
    /// written to it, and sends the device the events it should have received live but did not (written on
    /// another instance, or a fan-out message lost): a cursor never claims an event the socket was not given.
    /// Cheap to call often: at most one computation at a time per socket, none while nothing was sent.
    /// </summary>
    public async Task TryAdvanceAsync(SocketDelivery socket, CancellationToken cancellationToken)
    {
        var connection = socket.Connection;
        var state = socket.Cursors;
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

            // Drained now, before what the socket holds is looked at below: then every frame handed to it so far was
            // recorded, and an event found missing was not still on its way (read after, a frame whose write ended in
            // between would count as both missing and drained, and be written twice).
            var queueDrained = connection.IsDrained;
            var events = await store.ReadUserEventsAsync(connection.UserId, state.Pos, upto.Pos, CursorCheckLimit + 1, cancellationToken);
            var complete = events.Count <= CursorCheckLimit;
            var safe = state.Pos;
            EventKey? safeEvent = null;
            var covered = new Dictionary<Guid, long>();
            var missing = new List<UserEvent>();
            foreach (var e in events.Take(CursorCheckLimit))
            {
                if (!socket.Sent.Holds(e.Event.ConversationId, e.Event.Seq))
                {
                    missing.Add(e);
                }
                else if (missing.Count == 0)
                {
                    safe = e.Pos!.Value;
                    safeEvent = StreamCursors.Key(e);
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
            // it was merely late), no more than half the queue's free room at a time. Not while frames still wait in
            // the send queue or one is being written: a slow reader's lacking events may be among them (counted only once
            // written).
            var now = time.GetTimestamp();
            var missingSince = new Dictionary<(Guid, long), long>();
            var repair = new List<UserEvent>();
            foreach (var e in missing)
            {
                var key = (e.Event.ConversationId, e.Event.Seq);
                var since = state.MissingSince.TryGetValue(key, out var first) ? first : now;
                missingSince[key] = since;
                if (queueDrained && time.GetElapsedTime(since, now) >= RepairAfter && repair.Count < connection.QueueRoom / 2)
                {
                    repair.Add(e);
                }
            }

            state.MissingSince = missingSince;
            foreach (var frame in await frames.BuildFramesAsync(connection.UserId, repair, cancellationToken))
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

            Log.Checked(logger, connection.Id, state.Pos, upto.Pos, events.Count, missing.Count, repair.Count, safe);
            if (safe > state.Pos)
            {
                foreach (var (conversationId, seq) in covered)
                {
                    socket.Sent.Confirm(conversationId, seq);
                }

                state.Pos = safe;
                state.Offer(connection, Frames.Cursor(FrameTypes.Cursor, Cursor.At(upto.Epoch, safe, safeEvent, time.GetUtcNow()).Encode()));
            }

            // Events the socket holds that no cursor covers yet (not positioned when the range was read): look
            // again on the next ticks, a few times, so the device's cursor catches up without further traffic.
            if (!state.SentSinceCursor && socket.Sent.HasUnconfirmed && state.RecheckBudget > 0)
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

    private static partial class Log
    {
        [LoggerMessage(EventId = 6003, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: cursor not advanced: {Reason}")]
        public static partial void CursorFailed(ILogger logger, string connectionId, string reason);

        [LoggerMessage(
            EventId = 6005, Level = LogLevel.Debug,
            Message = "Connection {ConnectionId}: cursor check from {From} to {Upto}: {Events} events, {Missing} missing, {Repaired} sent again; cursor at {Safe}")]
        public static partial void Checked(ILogger logger, string connectionId, long from, long upto, int events, int missing, int repaired, long safe);

        [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Connection {ConnectionId}: sent {Count} events it had not received live")]
        public static partial void Repaired(ILogger logger, string connectionId, int count);
    }
}

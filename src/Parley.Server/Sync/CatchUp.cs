using System.Data.Common;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// The socket side of resume: sends a holding socket what its device missed after its cursor, then lets its live
/// events flow (docs/delivery.md, "Connecting with a cursor").
/// </summary>
internal sealed partial class CatchUp(IChatStore store, StreamCursors cursors, EventFrameBuilder frames, IOptions<DeliveryOptions> options, TimeProvider time, ILogger<CatchUp> logger)
{
    /// <summary>
    /// Resumes a socket that holds its live events: sends what the device missed after <paramref name="cursor"/>,
    /// the watermarks that moved, <c>sync_complete</c>, then releases the live events it did not already send.
    /// An expired cursor gets <c>sync_reset</c> instead. A storage failure closes the socket with 1013: the device
    /// retries and nothing is claimed that was not sent.
    /// </summary>
    public async Task RunAsync(SocketDelivery socket, Result<Cursor> cursor, CancellationToken cancellationToken)
    {
        var connection = socket.Connection;
        var state = socket.Cursors;
        state.Enabled = true;
        state.CatchingUp = true;
        try
        {
            if (!cursor.IsSuccess)
            {
                var fresh = await cursors.CurrentAsync(cancellationToken);
                await connection.EnqueueAsync(Frames.SyncReset(fresh.Encode(), cursor.Error!.Message), cancellationToken);
                state.Pos = fresh.Pos;
                socket.Release();
                return;
            }

            var sent = new Dictionary<Guid, long>();
            var from = cursor.Value!;
            // The watermarks are read first and sent last: every message they name was committed before the events are
            // read, so its new_message comes before any receipt of it (a read on another device meanwhile comes live,
            // after sync_complete).
            var watermarks = await frames.WatermarkFramesAsync(connection.UserId, from.IssuedAt, cancellationToken);
            var upto = await store.GetStreamPositionAsync(cancellationToken);
            var after = from.Pos;
            var pageSize = options.Value.CatchUpPage;
            while (true)
            {
                var page = await store.ReadUserEventsAsync(connection.UserId, after, upto.Pos, pageSize, cancellationToken);
                await SendAsync(connection, await frames.BuildFramesAsync(connection.UserId, page, cancellationToken), sent, cancellationToken);
                if (page.Count < pageSize)
                {
                    break;
                }

                after = page[^1].Pos!.Value;
                // Everything up to here is on its way: a catch-up cut short (the socket closed, or it could not keep
                // up) resumes from here next time, not from the start. Watermarks still replay from the old time.
                await connection.EnqueueAsync(Frames.Cursor(FrameTypes.Cursor, StreamCursors.At(upto.Epoch, page[^1], from.IssuedAt).Encode()), cancellationToken);
            }

            // Committed but positioned after the read above (or not yet): the sequencer may lag behind commits. Paged
            // too, by conversation and seq: a sequencer that stalled for long leaves many.
            (Guid, long)? newerAfter = null;
            while (true)
            {
                var newer = await store.ReadUserEventsNewerAsync(connection.UserId, upto.Pos, newerAfter, pageSize, cancellationToken);
                await SendAsync(connection, await frames.BuildFramesAsync(connection.UserId, newer, cancellationToken), sent, cancellationToken);
                if (newer.Count < pageSize)
                {
                    break;
                }

                newerAfter = (newer[^1].Event.ConversationId, newer[^1].Event.Seq);
            }

            await SendAsync(connection, watermarks.ConvertAll(w => w.Frame), sent, cancellationToken);

            var complete = Cursor.At(upto.Epoch, upto.Pos, upto.Last, time.GetUtcNow());
            await connection.EnqueueAsync(Frames.Cursor(FrameTypes.SyncComplete, complete.Encode()), cancellationToken);
            state.Pos = upto.Pos;
            state.SentSinceCursor = false;
            foreach (var (conversationId, seq) in sent)
            {
                // The device had everything up to its cursor, and the catch-up sent every later event.
                socket.Sent.Confirm(conversationId, seq);
            }

            await socket.ReleaseAsync(
                frame => frame.Seq > 0 && frame.ConversationId is { } c && sent.TryGetValue(c, out var seq) && frame.Seq <= seq, cancellationToken);
            Log.CaughtUp(logger, connection.Id, sent.Count, from.Pos, upto.Pos);
        }
        catch (Exception ex) when ((ex is OperationCanceledException && cancellationToken.IsCancellationRequested)
                                   || (ex is ChannelClosedException && connection.IsClosing))
        {
            // The socket closed during the catch-up (a close request completes its send queue before the closing token
            // is cancelled, so the next frame may find the queue closed): nothing failed, and its close code stands.
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            Log.CatchUpFailed(logger, connection.Id, ex);
            connection.RequestClose(CloseCodes.TryAgainLater, "storage unavailable; resume again");
        }
#pragma warning disable CA1031 // whatever failed, the socket must not stay open with its live events held for good
        catch (Exception ex)
#pragma warning restore CA1031
        {
            // Not a known transient failure: the device resumes again from its cursor, on this or another instance.
            Log.CatchUpCrashed(logger, connection.Id, ex);
            connection.RequestClose(CloseCodes.TryAgainLater, "resume failed; resume again");
        }
        finally
        {
            state.CatchingUp = false;
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

    private static partial class Log
    {
        [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Connection {ConnectionId} caught up {Conversations} conversations from position {From} to {To}")]
        public static partial void CaughtUp(ILogger logger, string connectionId, int conversations, long from, long to);

        [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: catch-up failed; closing with 1013")]
        public static partial void CatchUpFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 6006, Level = LogLevel.Error, Message = "Connection {ConnectionId}: catch-up failed unexpectedly; closing with 1013")]
        public static partial void CatchUpCrashed(ILogger logger, string connectionId, Exception exception);
    }
}

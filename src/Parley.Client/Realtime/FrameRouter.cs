using System.Text.Json;
using Microsoft.Extensions.Logging;
using Parley.Client.Protocol;

namespace Parley.Client.Realtime;

/// <summary>
/// Frame handling: applies each server frame to the pieces it concerns, in the order the socket delivered them
/// (events and cursors to the <see cref="DeliveryTracker"/>, acknowledgements and refusals to the
/// <see cref="Outbox"/>, <c>connected</c>, <c>sync_complete</c> and <c>sync_reset</c> to the connection's state),
/// and wakes the loops that have work because of it. Before a frame that feeds the app's stream it waits for
/// room in the <see cref="EventQueue"/>: the back-pressure that keeps the socket from being drained into memory.
/// </summary>
/// <remarks>
/// Concurrency: called by the current socket's receive loop, one frame at a time; it has no state of its own
/// (what it touches is guarded by each piece).
/// </remarks>
internal sealed class FrameRouter(
    DeliveryTracker delivery,
    EventQueue events,
    Outbox outbox,
    AckPacer acks,
    ConnectionStatus status,
    GapFiller gaps,
    Signal maintenanceWake,
    ILogger logger)
{
    /// <summary>Handles one frame: the <see cref="FrameHandler"/> of every <see cref="Session"/>.</summary>
    public async ValueTask OnFrameAsync(Session session, ReadOnlyMemory<byte> utf8, CancellationToken stopping)
    {
        ServerFrame frame;
        try
        {
            frame = ServerFrames.Parse(utf8.Span);
        }
        catch (JsonException ex)
        {
            // A position lost this way is a gap like any other: the next events reveal it and sync fills it.
            ParleyRealtime.Log.BadFrame(logger, ex.Message);
            return;
        }

        if (frame.Payload is ParleyEvent or CursorPayload or SyncResetPayload)
        {
            // Back-pressure: while the app has a full queue to read, this socket is not read on (docs/client.md).
            await events.WaitForRoomAsync(stopping);
        }

        switch (frame.Payload)
        {
            case ConnectedPayload connected:
                OnConnected(session, connected);
                break;
            case ConversationEvent e:
                OnConversationEvent(e);
                break;
            case ParleyEvent e:
                delivery.Emit(e);
                break;
            case CursorPayload cursor when frame.Type == FrameTypes.SyncComplete:
                delivery.SyncComplete(cursor.Cursor);
                BecameLive();
                break;
            case CursorPayload cursor:
                delivery.OnCursor(cursor.Cursor);
                break;
            case SyncResetPayload reset:
                ParleyRealtime.Log.SyncReset(logger, reset.Reason);
                delivery.Reset(reset.Cursor, reset.Reason ?? ParleyErrorCodes.CursorExpired, endsCatchUp: true);
                BecameLive();
                break;
            case MessageAckPayload ack:
                outbox.Acknowledged(ack.Message);
                break;
            case ErrorPayload error:
                var frameId = error.Id is { ValueKind: JsonValueKind.String } echoed ? echoed.GetString() : null;
                if ((frameId is null && error.ClientMessageId is null) || !outbox.Refused(frameId, error.ClientMessageId, error.Code, error.Message))
                {
                    ParleyRealtime.Log.ServerError(logger, error.Code, error.Message);
                }

                break;
        }
    }

    private void OnConnected(Session session, ConnectedPayload connected)
    {
        var catchingUp = delivery.Connected(connected, session.PresentedCursor);
        outbox.Attach(session, acks);
        ParleyRealtime.Log.Connected(logger, connected.ConnectionId, connected.UserId, connected.DeviceId, session.PresentedCursor);
        maintenanceWake.Set();
        if (catchingUp)
        {
            status.Set(new ConnectionStateChange(ConnectionState.CatchingUp));
        }
        else
        {
            BecameLive();
        }
    }

    private void OnConversationEvent(ConversationEvent e)
    {
        var result = delivery.Offer(e, out var catchingUp);

        // The message_ack of a resent message may still be on its way; its new_message already proves it stored.
        if (e is MessageCreatedEvent { Message: { ClientMessageId: not null } message } && message.SenderId == delivery.UserId)
        {
            outbox.Acknowledged(message);
        }

        if (result == OfferResult.Buffered)
        {
            ParleyRealtime.Log.GapDetected(logger, e.ConversationId, e.Seq, catchingUp);
            if (!catchingUp)
            {
                gaps.Wake();
            }
        }
    }

    private void BecameLive()
    {
        status.Live();
        gaps.Wake();
    }
}

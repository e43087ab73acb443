using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Messages;
using Parley.Server.Observability;
using Parley.Server.Presence;
using Parley.Server.Protocol;
using Parley.Server.Receipts;
using Parley.Server.Sync;

namespace Parley.Server.Realtime.Endpoint;

/// <summary>
/// Handles client frames, one at a time per socket (in its receive loop, so a client's frames are processed in
/// the order sent). A bad frame gets an <c>error</c> frame and the connection stays open.
/// </summary>
internal sealed partial class FrameDispatcher(
    ReceiptService receipts,
    TypingTracker typing,
    MessageService messages,
    StreamCursors cursors,
    CatchUp catchUp,
    CursorAdvancer cursorAdvancer,
    [FromKeyedServices(RateLimits.SendRate)] PartitionedRateLimiter<string> sendRate,
    [FromKeyedServices(RateLimits.FrameRate)] PartitionedRateLimiter<string> frameRate,
    TimeProvider time,
    IOptions<RealtimeOptions> options,
    ParleyMetrics metrics,
    ILogger<FrameDispatcher> logger)
{
    public InboundLimiter CreateInboundLimiter(string userId) => new(
        frameRate, userId, new ClockedTokenBucket(time, options.Value.AckFramesPerSecond, options.Value.AckBurst), new SendOrder(time));

    public async Task HandleAsync(SocketDelivery socket, Caller caller, InboundLimiter limiter, ReadOnlyMemory<byte> utf8, WebSocketMessageType messageType, CancellationToken cancellationToken)
    {
        var connection = socket.Connection;
        using var activity = StartFrameActivity(connection);
        try
        {
            await HandleFrameAsync(socket, caller, limiter, utf8, messageType, activity, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Whatever a frame does, it must not end the receive loop: the failure is logged, the client told.
            activity?.SetStatus(ActivityStatusCode.Error, ex.GetType().Name);
            Log.FrameFailed(logger, connection.Id, "(any)", ex);
            connection.TryEnqueue(Frames.Error(ErrorCodes.InternalError, "The frame could not be processed; try again.", null));
        }
    }

    /// <summary>
    /// A span for one frame (when traces are exported). It starts a trace of its own, linked to the socket's request:
    /// as a child of that request, which lasts as long as the connection, every frame of a connection would be one trace.
    /// </summary>
    private static Activity? StartFrameActivity(Connection connection)
    {
        var source = ParleyActivitySource.Source;
        if (!source.HasListeners())
        {
            return null;
        }

        // Scoped to HandleAsync: changes an async method makes to Activity.Current do not flow back to its caller (the receive loop).
        var request = Activity.Current;
        Activity.Current = null;
        var activity = source.StartActivity(
            ParleyActivitySource.Spans.WebSocketFrame, ActivityKind.Server, parentContext: default, links: request is null ? null : [new ActivityLink(request.Context)]);
        activity?.SetTag(ParleyActivitySource.Tags.ConnectionId, connection.Id);
        return activity;
    }

    private async Task HandleFrameAsync(
        SocketDelivery socket, Caller caller, InboundLimiter limiter, ReadOnlyMemory<byte> utf8, WebSocketMessageType messageType,
        Activity? activity, CancellationToken cancellationToken)
    {
        var connection = socket.Connection;
        var first = socket.MarkClientFrame();
        string? id = null;
        var parseError = "Frames are JSON text; binary frames are not accepted.";
        if (messageType != WebSocketMessageType.Text || !ClientFrame.TryParse(utf8.Span, out var frame, out id, out parseError))
        {
            metrics.FrameReceived(ParleyMetrics.FrameTags.Invalid);
            activity?.SetTag(ParleyActivitySource.Tags.FrameType, ParleyMetrics.FrameTags.Invalid);
            // Not a frame (a binary message included): live events flow, but no cursor is issued on this socket (it may
            // have been a resume).
            EndFirstFrameWait(socket, first);
            // From the frame budget too: an answer costs the same whether the frame was good or not.
            using var refused = limiter.Frames.AttemptAcquire(limiter.UserId);
            connection.TryEnqueue(refused.IsAcquired ? Frames.Error(ErrorCodes.InvalidFrame, parseError, id) : TooManyFrames(id));
            return;
        }

        var type = frame.Type;
        id = frame.Id;
        var knownType = KnownType(type);
        metrics.FrameReceived(knownType);
        activity?.SetTag(ParleyActivitySource.Tags.FrameType, knownType);
        if (type == FrameTypes.Resume)
        {
            // The first frame's resume is the device's way in; any later one is refused, and from the frame budget.
            using var repeated = first ? null : limiter.Frames.AttemptAcquire(limiter.UserId);
            if (repeated is { IsAcquired: false })
            {
                connection.TryEnqueue(TooManyFrames(id));
                return;
            }

            ResumeFrame payload;
            try
            {
                payload = frame.ReadPayload(ParleyJsonContext.Default.ResumeFrame);
            }
            catch (JsonException ex)
            {
                EndFirstFrameWait(socket, first);
                connection.TryEnqueue(Frames.Error(ErrorCodes.InvalidFrame, $"The payload of 'resume' is not valid: {JsonErrors.Describe(ex)}", id));
                return;
            }

            await ResumeAsync(socket, first, payload, id, cancellationToken);
            return;
        }

        if (first && !socket.ResumedOnConnect)
        {
            // The device is not resuming: what it holds is what it loads over REST plus what this socket sends.
            socket.Cursors.StopWithholding(connection);
        }

        EndFirstFrameWait(socket, first);
        using var lease = type == FrameTypes.Ack ? limiter.Acks.AttemptAcquire() : limiter.Frames.AttemptAcquire(limiter.UserId);
        if (!lease.IsAcquired)
        {
            // A send refused here holds back the socket's later sends to its conversation, as one the send rate refuses.
            var send = type == FrameTypes.SendMessage ? RefusedSend(frame) : null;
            if (send is { ConversationId: { } conversationId, ClientMessageId: { } refusedId })
            {
                limiter.Sends.Refused(conversationId, refusedId, ErrorCodes.RateLimited);
            }

            connection.TryEnqueue(TooManyFrames(id, send?.ClientMessageId));
            return;
        }

        ApiError? error;
        try
        {
            switch (type)
            {
                case FrameTypes.Ping:
                    connection.TryEnqueue(Frames.Pong(time.GetUtcNow()));
                    return;
                case FrameTypes.Typing:
                    error = await TypingAsync(caller, frame.ReadPayload(ParleyJsonContext.Default.TypingFrame), cancellationToken);
                    break;
                case FrameTypes.ReadReceipt:
                    error = await ReadAsync(caller, frame.ReadPayload(ParleyJsonContext.Default.ReadReceiptFrame), cancellationToken);
                    break;
                case FrameTypes.Ack:
                    error = await AckAsync(socket, caller, frame.ReadPayload(ParleyJsonContext.Default.AckFrame), cancellationToken);
                    break;
                case FrameTypes.SendMessage:
                    await SendMessageAsync(connection, caller, limiter.Sends, frame.ReadPayload(ParleyJsonContext.Default.SendMessageRequest), id, cancellationToken);
                    return;
                default:
                    error = new ApiError(400, ErrorCodes.UnknownType, $"Unknown frame type '{type}'.");
                    break;
            }
        }
        catch (JsonException ex)
        {
            error = new ApiError(400, ErrorCodes.InvalidFrame, $"The payload of '{type}' is not valid: {JsonErrors.Describe(ex)}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            error = Failure(connection, type, ex);
        }

        if (error is not null)
        {
            activity?.SetTag(ParleyActivitySource.Tags.ErrorCode, error.Code);
            connection.TryEnqueue(Frames.Error(error.Code, error.Message, id));
        }
    }

    private static OutboundFrame TooManyFrames(string? id, string? clientMessageId = null) =>
        Frames.Error(ErrorCodes.RateLimited, "Too many frames; slow down.", id, clientMessageId);

    /// <summary>
    /// The frame type as a metric tag and span tag: the constant for a type Parley knows, <c>unknown</c> for anything
    /// else, so a client cannot create tag values (or allocate them) by sending made-up types.
    /// </summary>
    private static string KnownType(string type) => type switch
    {
        FrameTypes.Ping => FrameTypes.Ping,
        FrameTypes.Typing => FrameTypes.Typing,
        FrameTypes.ReadReceipt => FrameTypes.ReadReceipt,
        FrameTypes.Ack => FrameTypes.Ack,
        FrameTypes.Resume => FrameTypes.Resume,
        FrameTypes.SendMessage => FrameTypes.SendMessage,
        _ => ParleyMetrics.FrameTags.Unknown,
    };

    private Task<ApiError?> TypingAsync(Caller caller, TypingFrame payload, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(payload.ConversationId, out var conversationId))
        {
            return Task.FromResult<ApiError?>(ApiError.InvalidId("conversation_id"));
        }

        if (payload.IsTyping is not { } isTyping)
        {
            return Task.FromResult<ApiError?>(ApiError.Invalid("is_typing", "'is_typing' is required (true or false)."));
        }

        return typing.UpdateAsync(caller, conversationId, isTyping, cancellationToken);
    }

    private async Task<ApiError?> ReadAsync(Caller caller, ReadReceiptFrame payload, CancellationToken cancellationToken)
    {
        if (payload.MessageId is null)
        {
            return ApiError.Invalid("message_id", "'message_id' is required.");
        }

        var result = await receipts.MarkReadAsync(caller, payload.MessageId, "message_id", cancellationToken);
        return result.Error;
    }

    private static void EndFirstFrameWait(SocketDelivery socket, bool first)
    {
        if (first && !socket.ResumedOnConnect)
        {
            socket.EndFirstFrameWait();
        }
    }

    /// <summary>
    /// <c>resume</c>: only as the first frame of a connection opened without a cursor, and only while the live
    /// events since connecting are still held (within Delivery:FirstFrameWait); the catch-up runs beside the loops.
    /// The hold is claimed before anything is awaited, so the end of the wait cannot release live events between
    /// accepting the resume and starting its catch-up. A refused resume leaves the socket live-only without cursors.
    /// </summary>
    private async Task ResumeAsync(SocketDelivery socket, bool first, ResumeFrame payload, string? id, CancellationToken cancellationToken)
    {
        var connection = socket.Connection;
        if (!first || socket.ResumedOnConnect)
        {
            connection.TryEnqueue(Frames.Error(
                ErrorCodes.InvalidFrame, "'resume' is accepted only as the first frame of a connection opened without a cursor.", id));
            return;
        }

        if (!socket.TryClaimHoldForResume())
        {
            Log.ResumeTooLate(logger, connection.Id);
            connection.TryEnqueue(Frames.Error(
                ErrorCodes.ResumeTooLate,
                "'resume' came after live events started on this connection (Delivery:FirstFrameWait); it was not applied and this connection gets no cursors. Reconnect with ?cursor= to resume.",
                id));
            return;
        }

        Result<Cursor> cursor;
        try
        {
            cursor = await cursors.ValidateAsync(payload.Cursor, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // As when a catch-up fails: nothing was sent, the device resumes again shortly. Whatever the failure: the
            // socket's live events are held for the resume, and left open it would get none of them.
            Log.ResumeFailed(logger, connection.Id, ex);
            connection.RequestClose(CloseCodes.TryAgainLater, "the cursor could not be checked; resume again");
            return;
        }

        if (cursor.Error is { Status: 400 } invalid)
        {
            socket.Release();
            connection.TryEnqueue(Frames.Error(invalid.Code, invalid.Message, id));
            return;
        }

        // The device holds what its own cursor covers, not what a device without one would load over REST: forget
        // that assumption, and every cursor computed from it, with no cursor check running meanwhile.
        var state = socket.Cursors;
        using (await state.ExclusiveAsync(cancellationToken))
        {
            state.CatchingUp = true;
            socket.Sent.Clear();
            state.DiscardPending();
            state.Withheld = false;
        }

        connection.Attach(catchUp.RunAsync(socket, cursor, connection.Closing));
    }

    /// <summary><c>send_message</c>: the REST send over the socket, answered by <c>message_ack</c> (first send or retry) or an error naming the send.</summary>
    private async Task SendMessageAsync(
        Connection connection, Caller caller, SendOrder order, SendMessageRequest payload, string? id, CancellationToken cancellationToken)
    {
        var clientMessageId = payload.ClientMessageId;
        if (string.IsNullOrEmpty(clientMessageId))
        {
            connection.TryEnqueue(Frames.Error(ErrorCodes.ValidationFailed, "'client_message_id' is required for send_message.", id));
            return;
        }

        Guid? conversationId = Identifiers.TryParseUuid(payload.ConversationId, out var parsed) ? parsed : null;
        if (conversationId is { } held && order.Blocking(held, clientMessageId) is { } earlier)
        {
            connection.TryEnqueue(Frames.Error(
                earlier.Code,
                $"The earlier send '{earlier.ClientMessageId}' to this conversation was refused and goes first, so that the messages keep their order; send this one again after it.",
                id,
                clientMessageId));
            return;
        }

        var error = await SendOverSocketAsync(connection, caller, payload, clientMessageId, id, cancellationToken);
        // Refusals that pass with time. Not internal_error: clients retry it too, but it may be a send the server can
        // never store (a bug), and holding the others back behind it would stop the conversation for that device.
        if (error is not null && conversationId is { } refusedIn && error.Code is ErrorCodes.RateLimited or ErrorCodes.ServiceUnavailable)
        {
            order.Refused(refusedIn, clientMessageId, error.Code);
        }
    }

    /// <summary>What names a send the frame budget refused: its conversation and client_message_id, when readable.</summary>
    private static (Guid? ConversationId, string? ClientMessageId)? RefusedSend(ClientFrame frame)
    {
        try
        {
            var payload = frame.ReadPayload(ParleyJsonContext.Default.SendMessageRequest);
            return (Identifiers.TryParseUuid(payload.ConversationId, out var conversationId) ? conversationId : null,
                string.IsNullOrEmpty(payload.ClientMessageId) ? null : payload.ClientMessageId);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Stores the send and answers it; returns the refusal, if it was refused.</summary>
    private async Task<ApiError?> SendOverSocketAsync(
        Connection connection, Caller caller, SendMessageRequest payload, string clientMessageId, string? id, CancellationToken cancellationToken)
    {
        ApiError? error;
        using var lease = sendRate.AttemptAcquire(caller.UserId);
        if (!lease.IsAcquired)
        {
            error = new ApiError(429, ErrorCodes.RateLimited, $"Too many messages; retry after {RateLimits.RetryAfterSeconds(lease)} s.");
            connection.TryEnqueue(Frames.Error(error.Code, error.Message, id, clientMessageId));
            return error;
        }

        Result<Storage.SendResult> result;
        try
        {
            result = await messages.SendAsync(caller, payload, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The error names the send, as every refusal of one does: a client that does not number its frames tells by it.
            error = Failure(connection, FrameTypes.SendMessage, ex);
            connection.TryEnqueue(Frames.Error(error.Code, error.Message, id, clientMessageId));
            return error;
        }

        error = result.Error;
        connection.TryEnqueue(error is null
            ? Frames.MessageAck(clientMessageId, result.Value!.Message)
            : Frames.Error(error.Code, error.Message, id, clientMessageId));
        return error;
    }

    /// <summary>
    /// What a frame that failed unexpectedly answers. A database error as over HTTP: nothing was written, and only an
    /// unavailable database is worth a retry (service_unavailable). Anything else is logged, and the client told; one
    /// failed frame must not end the connection.
    /// </summary>
    private ApiError Failure(Connection connection, string type, Exception exception)
    {
        if (exception is System.Data.Common.DbException storage)
        {
            var error = ApiError.ForStorageFailure(storage);
            if (error.Status != StatusCodes.Status503ServiceUnavailable)
            {
                Log.FrameFailed(logger, connection.Id, type, exception);
            }

            return error;
        }

        Log.FrameFailed(logger, connection.Id, type, exception);
        return new ApiError(500, ErrorCodes.InternalError, "The frame could not be processed; try again.");
    }

    private async Task<ApiError?> AckAsync(SocketDelivery socket, Caller caller, AckFrame payload, CancellationToken cancellationToken)
    {
        var error = await AcknowledgeAsync(caller, payload, cancellationToken);
        if (error is null)
        {
            await cursorAdvancer.AcknowledgedAsync(socket, cancellationToken);
        }

        return error;
    }

    private Task<ApiError?> AcknowledgeAsync(Caller caller, AckFrame payload, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(payload.ConversationId, out var conversationId))
        {
            return Task.FromResult<ApiError?>(ApiError.InvalidId("conversation_id"));
        }

        if (payload.Seq is not >= 1)
        {
            return Task.FromResult<ApiError?>(ApiError.Invalid("seq", "'seq' is required, a positive integer."));
        }

        return receipts.AcknowledgeAsync(caller, conversationId, payload.Seq.Value, cancellationToken);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: resume failed; closing with 1013")]
        public static partial void ResumeFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Connection {ConnectionId}: resume refused, it came after live events started")]
        public static partial void ResumeTooLate(ILogger logger, string connectionId);

        [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Connection {ConnectionId}: frame '{FrameType}' failed")]
        public static partial void FrameFailed(ILogger logger, string connectionId, string frameType, Exception exception);
    }
}

/// <summary>
/// A socket's inbound budgets: its own for acks, its user's (<paramref name="Frames"/> keyed by <paramref name="UserId"/>,
/// shared by the user's sockets on this instance) for every other frame. A <c>resume</c> is free: it comes once. And the
/// order its sends keep (<paramref name="Sends"/>).
/// </summary>
internal sealed record InboundLimiter(PartitionedRateLimiter<string> Frames, string UserId, RateLimiter Acks, SendOrder Sends) : IDisposable
{
    public void Dispose() => Acks.Dispose();
}

using System.Text.Json;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Presence;
using Parley.Server.Realtime.Protocol;
using Parley.Server.Receipts;

namespace Parley.Server.Realtime;

/// <summary>
/// Handles client frames, one at a time per socket (in its receive loop, so a client's frames are processed in
/// the order sent). A bad frame gets an <c>error</c> frame and the connection stays open.
/// </summary>
internal sealed partial class FrameDispatcher(
    ReceiptService receipts,
    TypingTracker typing,
    TimeProvider time,
    IOptions<RealtimeOptions> options,
    ILogger<FrameDispatcher> logger)
{
    public TokenBucket CreateInboundLimiter() =>
        new(time, options.Value.InboundFramesPerSecond, options.Value.InboundBurst);

    public async Task HandleAsync(Connection connection, Caller caller, TokenBucket limiter, ReadOnlyMemory<byte> utf8, CancellationToken cancellationToken)
    {
        if (!ClientFrame.TryParse(utf8.Span, out var frame, out var id, out var parseError))
        {
            connection.TryEnqueue(Frames.Error(ErrorCodes.InvalidFrame, parseError, id));
            return;
        }

        var type = frame.Type;
        id = frame.Id;
        if (!limiter.TryTake())
        {
            connection.TryEnqueue(Frames.Error(ErrorCodes.RateLimited, "Too many frames; slow down.", id));
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
                    error = await AckAsync(caller, frame.ReadPayload(ParleyJsonContext.Default.AckFrame), cancellationToken);
                    break;
                default:
                    error = new ApiError(400, ErrorCodes.UnknownType, $"Unknown frame type '{type}'.");
                    break;
            }
        }
        catch (JsonException ex)
        {
            error = new ApiError(400, ErrorCodes.InvalidFrame, $"The payload of '{type}' is not valid: {ex.Message}");
        }
        catch (System.Data.Common.DbException)
        {
            // As over HTTP: the database refused or is unreachable, nothing was written, the client may retry.
            error = new ApiError(503, ErrorCodes.ServiceUnavailable, "Storage is unavailable; retry shortly.");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // One failed frame must not end the connection; the failure is logged, the client told.
            Log.FrameFailed(logger, connection.Id, type, ex);
            error = new ApiError(500, ErrorCodes.InternalError, "The frame could not be processed; try again.");
        }

        if (error is not null)
        {
            connection.TryEnqueue(Frames.Error(error.Code, error.Message, id));
        }
    }

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

        var result = await receipts.MarkReadAsync(caller, payload.MessageId, cancellationToken);
        return result.Error;
    }

    private Task<ApiError?> AckAsync(Caller caller, AckFrame payload, CancellationToken cancellationToken)
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
        [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Connection {ConnectionId}: frame '{FrameType}' failed")]
        public static partial void FrameFailed(ILogger logger, string connectionId, string frameType, Exception exception);
    }
}

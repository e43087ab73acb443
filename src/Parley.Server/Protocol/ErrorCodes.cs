namespace Parley.Server.Protocol;

/// <summary>
/// Stable, machine-readable error codes. They appear as <c>code</c> in HTTP ProblemDetails and in WebSocket
/// <c>error</c> frames. Public API: documented in docs/errors.md; never rename one.
/// </summary>
internal static class ErrorCodes
{
    public const string InvalidRequest = "invalid_request";
    public const string ValidationFailed = "validation_failed";
    public const string InvalidId = "invalid_id";
    public const string Unauthenticated = "unauthenticated";
    public const string Forbidden = "forbidden";
    public const string NotSender = "not_sender";
    public const string EditWindowExpired = "edit_window_expired";
    public const string NotFound = "not_found";
    public const string MethodNotAllowed = "method_not_allowed";
    public const string DirectConversation = "direct_conversation";
    public const string MessageDeleted = "message_deleted";
    public const string ParticipantLimit = "participant_limit";
    public const string IdempotencyConflict = "idempotency_conflict";
    public const string InvalidCursor = "invalid_cursor";
    public const string CursorExpired = "cursor_expired";
    public const string PayloadTooLarge = "payload_too_large";
    public const string UnsupportedMediaType = "unsupported_media_type";
    public const string UnsupportedSubprotocol = "unsupported_subprotocol";
    public const string RateLimited = "rate_limited";
    public const string ServiceUnavailable = "service_unavailable";
    public const string InternalError = "internal_error";

    // WebSocket only
    public const string InvalidFrame = "invalid_frame";
    public const string UnknownType = "unknown_type";
    public const string ResumeTooLate = "resume_too_late";

    /// <summary>The default code for a status when nothing more specific applies (e.g. framework 404/405).</summary>
    public static string ForStatus(int status) => status switch
    {
        400 => InvalidRequest,
        401 => Unauthenticated,
        403 => Forbidden,
        404 => NotFound,
        405 => MethodNotAllowed,
        410 => CursorExpired,
        413 => PayloadTooLarge,
        415 => UnsupportedMediaType,
        429 => RateLimited,
        503 => ServiceUnavailable,
        _ when status >= 500 => InternalError,
        _ => InvalidRequest,
    };
}

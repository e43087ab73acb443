using System.Net;

namespace Parley.Client;

/// <summary>
/// The server refused a request: an HTTP ProblemDetails answer, or an <c>error</c> frame answering a socket send.
/// <see cref="Code"/> is stable and machine-readable (<see cref="ParleyErrorCodes"/>); <see cref="Detail"/> is for humans.
/// </summary>
public sealed class ParleyApiException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ParleyApiException(
        HttpStatusCode? statusCode, string code, string? detail, IReadOnlyDictionary<string, string[]>? errors = null, TimeSpan? retryAfter = null)
        : base(Describe(statusCode, code, detail))
    {
        StatusCode = statusCode;
        Code = code;
        Detail = detail;
        Errors = errors ?? new Dictionary<string, string[]>();
        RetryAfter = retryAfter;
    }

    /// <summary>The HTTP status; null when the error came in a WebSocket <c>error</c> frame.</summary>
    public HttpStatusCode? StatusCode { get; }

    /// <summary>The stable error code, e.g. <c>not_found</c>, <c>validation_failed</c>, <c>idempotency_conflict</c>.</summary>
    public string Code { get; }

    /// <summary>The server's human-readable explanation.</summary>
    public string? Detail { get; }

    /// <summary>Per-field messages of a validation failure (snake_case field names); empty otherwise.</summary>
    public IReadOnlyDictionary<string, string[]> Errors { get; }

    /// <summary>How long to wait before retrying (429 and 503 answers carry it).</summary>
    public TimeSpan? RetryAfter { get; }

    private static string Describe(HttpStatusCode? status, string code, string? detail) =>
        status is null ? $"{code}: {detail}" : $"{(int)status.Value} {code}: {detail}";
}

/// <summary>
/// The realtime connection cannot go on by itself: the upgrade was refused (bad credentials, bad request) or
/// the server closed the socket with a code that asks the client to change something (1009, 4xxx errors).
/// </summary>
public sealed class ParleyConnectionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ParleyConnectionException(string message, int? closeStatus = null, HttpStatusCode? handshakeStatus = null, Exception? innerException = null)
        : base(message, innerException)
    {
        CloseStatus = closeStatus;
        HandshakeStatus = handshakeStatus;
    }

    /// <summary>The WebSocket close code the server sent, when it closed the socket.</summary>
    public int? CloseStatus { get; }

    /// <summary>The HTTP status of a refused upgrade.</summary>
    public HttpStatusCode? HandshakeStatus { get; }
}

/// <summary>Stable error codes (docs/errors.md).</summary>
public static class ParleyErrorCodes
{
    /// <summary>Malformed JSON, missing body, bad query parameter.</summary>
    public const string InvalidRequest = "invalid_request";

    /// <summary>One or more fields are invalid; see <see cref="ParleyApiException.Errors"/>.</summary>
    public const string ValidationFailed = "validation_failed";

    /// <summary>An id is not a UUID.</summary>
    public const string InvalidId = "invalid_id";

    /// <summary>Missing or invalid credentials.</summary>
    public const string Unauthenticated = "unauthenticated";

    /// <summary>A member without the right.</summary>
    public const string Forbidden = "forbidden";

    /// <summary>Only the sender may edit a message.</summary>
    public const string NotSender = "not_sender";

    /// <summary>The edit window has passed.</summary>
    public const string EditWindowExpired = "edit_window_expired";

    /// <summary>Unknown resource, or a conversation the caller is not a member of.</summary>
    public const string NotFound = "not_found";

    /// <summary>The path exists, the method does not.</summary>
    public const string MethodNotAllowed = "method_not_allowed";

    /// <summary>Direct conversations' members cannot change.</summary>
    public const string DirectConversation = "direct_conversation";

    /// <summary>The message was deleted.</summary>
    public const string MessageDeleted = "message_deleted";

    /// <summary>The group would exceed its member limit.</summary>
    public const string ParticipantLimit = "participant_limit";

    /// <summary>The client_message_id was used for a different message.</summary>
    public const string IdempotencyConflict = "idempotency_conflict";

    /// <summary>The body exceeds the server's request size limit.</summary>
    public const string PayloadTooLarge = "payload_too_large";

    /// <summary>The body is not application/json.</summary>
    public const string UnsupportedMediaType = "unsupported_media_type";

    /// <summary>The WebSocket offered only subprotocols other than parley.v1.</summary>
    public const string UnsupportedSubprotocol = "unsupported_subprotocol";

    /// <summary>Too many requests or messages.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>Storage is unavailable; retry.</summary>
    public const string ServiceUnavailable = "service_unavailable";

    /// <summary>A server bug.</summary>
    public const string InternalError = "internal_error";

    /// <summary>The sync cursor is missing or malformed.</summary>
    public const string InvalidCursor = "invalid_cursor";

    /// <summary>The sync cursor is too old, from another deployment, or ahead of a restored database: reload over REST.</summary>
    public const string CursorExpired = "cursor_expired";

    /// <summary>WebSocket: the frame or its payload is not valid.</summary>
    public const string InvalidFrame = "invalid_frame";

    /// <summary>WebSocket: unknown frame type.</summary>
    public const string UnknownType = "unknown_type";

    /// <summary>WebSocket: a first-frame resume came after live events started; reconnect with the cursor in the URL.</summary>
    public const string ResumeTooLate = "resume_too_late";
}

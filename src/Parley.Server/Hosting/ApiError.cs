using System.Data.Common;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Hosting;

/// <summary>
/// A rejected request: the HTTP status, a stable code and a human-readable message. HTTP endpoints turn it
/// into ProblemDetails, the WebSocket into an <c>error</c> frame.
/// </summary>
internal sealed record ApiError(int Status, string Code, string Message, IReadOnlyDictionary<string, string[]>? Errors = null)
{
    public static ApiError NotFound(string what) => new(404, ErrorCodes.NotFound, $"{what} was not found.");

    public static ApiError Forbidden(string message) => new(403, ErrorCodes.Forbidden, message);

    public static ApiError BadRequest(string code, string message) => new(400, code, message);

    /// <summary>A request whose body is missing (or is JSON <c>null</c>): malformed, not a field to correct.</summary>
    public static ApiError BodyRequired() => new(400, ErrorCodes.InvalidRequest, "A JSON body is required.");

    public static ApiError Invalid(string field, string message) =>
        new(400, ErrorCodes.ValidationFailed, message, new Dictionary<string, string[]> { [field] = [message] });

    public static ApiError Conflict(string code, string message) => new(409, code, message);

    public static ApiError InvalidId(string field) =>
        new(400, ErrorCodes.InvalidId, $"'{field}' must be a UUID.", new Dictionary<string, string[]> { [field] = ["must be a UUID"] });

    /// <summary>
    /// What a storage failure that escaped a feature means for the client, the same over HTTP and the WebSocket. Only
    /// failures that waiting fixes are 503 (with Retry-After): a permanent error reported as retryable makes clients
    /// (Parley's own included) retry it forever. Values are checked before they reach storage (<see cref="TextRules"/>),
    /// so a refused value is a gap in that validation and is logged, with the database's code: the client is not told
    /// which database answered or how (the answer's trace id finds the log entry).
    /// </summary>
    public static ApiError ForStorageFailure(DbException exception) => StorageErrors.Classify(exception) switch
    {
        StorageFailure.Unavailable => new ApiError(503, ErrorCodes.ServiceUnavailable, "Storage is unavailable; retry shortly."),
        StorageFailure.RefusedValue => new ApiError(
            400, ErrorCodes.InvalidRequest,
            "Storage refused a value of this request; it will be refused again if retried unchanged."),
        _ => new ApiError(500, ErrorCodes.InternalError, "An unexpected error occurred."),
    };
}

/// <summary>A value or the reason there is none.</summary>
internal readonly struct Result<T>
{
    private Result(T? value, ApiError? error)
    {
        Value = value;
        Error = error;
    }

    public T? Value { get; }

    public ApiError? Error { get; }

    public bool IsSuccess => Error is null;

    public static implicit operator Result<T>(T value) => new(value, null);

    public static implicit operator Result<T>(ApiError error) => new(default, error);
}

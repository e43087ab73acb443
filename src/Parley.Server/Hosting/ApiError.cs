using Parley.Server.Realtime.Protocol;

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

    public static ApiError Invalid(string field, string message) =>
        new(400, ErrorCodes.ValidationFailed, message, new Dictionary<string, string[]> { [field] = [message] });

    public static ApiError Conflict(string code, string message) => new(409, code, message);

    public static ApiError InvalidId(string field) =>
        new(400, ErrorCodes.InvalidId, $"'{field}' must be a UUID.", new Dictionary<string, string[]> { [field] = ["must be a UUID"] });
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

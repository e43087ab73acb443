namespace Parley.Server.Hosting;

/// <summary>Rules for ids that come from outside: user ids (opaque strings of the application's identity provider) and device ids.</summary>
internal static class Identifiers
{
    public const int MaxUserIdLength = 128;

    /// <summary>What a well-formed user or device id is, in the words of every answer that refuses one.</summary>
    public const string Shape = "1-128 characters without whitespace, control or invisible format characters";

    /// <summary>The answer to a user id in a path that no user could have.</summary>
    public const string UserIdRule = $"A user id is {Shape}.";

    /// <summary>
    /// 1 to 128 characters, no whitespace, no control characters and no invisible format characters (zero-width spaces,
    /// direction overrides: "alice" and "alice" with a zero-width space after it would look the same in every list), and
    /// not "." or ".." (a URL path cannot carry those: they are path steps); anything else is opaque.
    /// </summary>
    public static bool IsValidUserId(string? value) => IsWellFormed(value, MaxUserIdLength) && value is not ("." or "..");

    /// <summary>
    /// A user id that is a segment of the request's path (<paramref name="fromEnd"/> segments before the last), decoded
    /// from the raw request target: routing decodes every escape in a route value but an encoded slash, so the route value
    /// of user "org/alice" (sent as <c>org%2Falice</c>) would be the text "org%2Falice", and could even name another user
    /// whose id is that text. Falls back to <paramref name="routeValue"/> when the raw target does not match it.
    /// </summary>
    public static string UserIdFromPath(HttpContext context, string routeValue, int fromEnd)
    {
        var raw = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(raw) || raw[0] != '/')
        {
            return routeValue;
        }

        var query = raw.IndexOf('?', StringComparison.Ordinal);
        var segments = (query >= 0 ? raw[..query] : raw).TrimEnd('/').Split('/');
        if (segments.Length <= fromEnd + 1)
        {
            return routeValue;
        }

        var segment = segments[^(fromEnd + 1)];
        // The raw segment must be the route value's: decoded the way routing does (every escape but %2F) it gives it.
        var asRouted = Uri.UnescapeDataString(segment.Replace("%2F", "%252F", StringComparison.Ordinal).Replace("%2f", "%252f", StringComparison.Ordinal));
        return asRouted == routeValue ? Uri.UnescapeDataString(segment) : routeValue;
    }

    public static bool IsValidDeviceId(string? value) => IsWellFormed(value, MaxUserIdLength);

    public static bool TryParseUuid(string? value, out Guid id)
    {
        id = Guid.Empty;
        return value is not null && value.Length == 36 && Guid.TryParseExact(value, "D", out id);
    }

    private static bool IsWellFormed(string? value, int maxLength)
    {
        if (string.IsNullOrEmpty(value) || value.Length > maxLength)
        {
            return false;
        }

        var rest = value.AsSpan();
        while (!rest.IsEmpty)
        {
            // Invalid UTF-16 (a lone surrogate) cannot round-trip through UTF-8 JSON or the database.
            if (System.Text.Rune.DecodeFromUtf16(rest, out var rune, out var consumed) != System.Buffers.OperationStatus.Done
                || System.Text.Rune.IsWhiteSpace(rune) || System.Text.Rune.IsControl(rune)
                || System.Text.Rune.GetUnicodeCategory(rune) == System.Globalization.UnicodeCategory.Format)
            {
                return false;
            }

            rest = rest[consumed..];
        }

        return true;
    }
}

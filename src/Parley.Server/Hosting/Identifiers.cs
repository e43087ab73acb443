namespace Parley.Server.Hosting;

/// <summary>Rules for ids that come from outside: user ids (opaque strings of the application's identity provider) and device ids.</summary>
internal static class Identifiers
{
    public const int MaxUserIdLength = 128;

    /// <summary>1 to 128 characters, no whitespace and no control characters; anything else is opaque.</summary>
    public static bool IsValidUserId(string? value) => IsWellFormed(value, MaxUserIdLength);

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
                || System.Text.Rune.IsWhiteSpace(rune) || System.Text.Rune.IsControl(rune))
            {
                return false;
            }

            rest = rest[consumed..];
        }

        return true;
    }
}

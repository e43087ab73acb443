using System.Globalization;
using System.Text;

namespace Parley.Server.Hosting;

/// <summary>
/// The one rule for text that clients send and Parley stores (docs/api.md, "Text"): checked in each feature's
/// validation, before anything reaches storage, so both stores keep exactly what was sent and refuse the same things.
/// <list type="bullet">
/// <item>Every string must be valid UTF-16: no lone surrogate (it has no UTF-8 form; the JSON reader refuses most).</item>
/// <item>No string may contain U+0000: PostgreSQL refuses it in text (SQLSTATE 22021) and SQLite cuts the string there.</item>
/// <item>Multi-line text (message content) may contain tab, line feed and carriage return, and no other control
/// character (Unicode category Cc: U+0001–U+001F, U+007F–U+009F). Single-line text (names, file names, MIME types,
/// URLs) may contain none at all. User and device ids have their own, stricter rule (<see cref="Identifiers"/>).</item>
/// </list>
/// Format characters (zero-width joiners of emoji sequences, direction marks) are text, not controls, and are kept.
/// </summary>
internal static class TextRules
{
    /// <summary>Why <paramref name="value"/> breaks the rule (to follow a field name: "'content' must …"), or null.</summary>
    public static string? Check(string? value, bool multiLine)
    {
        if (value is null)
        {
            return null;
        }

        var rest = value.AsSpan();
        var position = 0;
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf16(rest, out var rune, out var consumed) != System.Buffers.OperationStatus.Done)
            {
                return $"must be valid Unicode text (a lone surrogate at position {position})";
            }

            if (rune.Value == 0)
            {
                return $"must not contain U+0000 (NUL), found at position {position}";
            }

            if (Rune.IsControl(rune) && !(multiLine && rune.Value is '\t' or '\n' or '\r'))
            {
                var code = rune.Value.ToString("X4", CultureInfo.InvariantCulture);
                return multiLine
                    ? $"must not contain control character U+{code} (position {position}); of the control characters only tab, line feed and carriage return are allowed"
                    : $"must not contain control characters (U+{code} at position {position})";
            }

            position += consumed;
            rest = rest[consumed..];
        }

        return null;
    }
}

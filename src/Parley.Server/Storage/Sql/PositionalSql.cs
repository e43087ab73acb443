using System.Collections.Concurrent;
using System.Text;

namespace Parley.Server.Storage.Sql;

/// <summary>One statement of a command's text, its <c>@name</c> parameters numbered <c>$1</c>, <c>$2</c>, ... in order of first use.</summary>
internal sealed record PositionalStatement(string Sql, string[] Parameters);

/// <summary>
/// Splits a command's text into statements with positional parameters, once per distinct text. A provider that
/// binds by position (PostgreSQL) then runs them as a batch as they are: Npgsql would otherwise parse the text of
/// every command it runs to find its statements and number its named parameters (5.5 % of the server's CPU at 1,000
/// messages/s).
/// <para>
/// Understands what the stores' SQL uses: <c>'...'</c> strings, <c>"..."</c> identifiers, <c>--</c> and
/// <c>/* */</c> comments, and <c>;</c> between statements. Text with a <c>$</c> outside those (dollar quoting, or
/// positional parameters already) is not split: <see cref="Split"/> answers null and the text goes to the provider as
/// it is.
/// </para>
/// </summary>
internal static class PositionalSql
{
    /// <summary>Distinct texts kept; beyond it, texts are split each time (IN lists of every length would fill it).</summary>
    private const int MaxCached = 4096;

    private static readonly ConcurrentDictionary<string, PositionalStatement[]?> Cache = new(StringComparer.Ordinal);

    /// <summary>The statements of <paramref name="text"/>, or null when it cannot be split safely.</summary>
    public static PositionalStatement[]? Split(string text)
    {
        if (Cache.TryGetValue(text, out var statements))
        {
            return statements;
        }

        statements = Parse(text);
        if (Cache.Count < MaxCached)
        {
            Cache.TryAdd(text, statements);
        }

        return statements;
    }

    internal static PositionalStatement[]? Parse(string text)
    {
        var statements = new List<PositionalStatement>();
        var sql = new StringBuilder(text.Length);
        var names = new List<string>();
        var hasCode = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            var next = i + 1 < text.Length ? text[i + 1] : '\0';
            if (c == '-' && next == '-')
            {
                var end = text.IndexOf('\n', i);
                end = end < 0 ? text.Length : end;
                sql.Append(text, i, end - i);
                i = end - 1;
            }
            else if (c == '/' && next == '*')
            {
                var end = text.IndexOf("*/", i + 2, StringComparison.Ordinal);
                if (end < 0)
                {
                    return null;
                }

                sql.Append(text, i, end + 2 - i);
                i = end + 1;
            }
            else if (c is '\'' or '"')
            {
                var end = QuoteEnd(text, i);
                if (end < 0)
                {
                    return null;
                }

                sql.Append(text, i, end + 1 - i);
                i = end;
                hasCode = true;
            }
            else if (c == '$')
            {
                return null;
            }
            else if (c == '@' && (char.IsAsciiLetter(next) || next == '_'))
            {
                var end = i + 1;
                while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] == '_'))
                {
                    end++;
                }

                var name = text[i..end];
                var index = names.IndexOf(name);
                if (index < 0)
                {
                    names.Add(name);
                    index = names.Count - 1;
                }

                sql.Append('$').Append(index + 1);
                i = end - 1;
                hasCode = true;
            }
            else if (c == ';')
            {
                Flush();
            }
            else
            {
                hasCode |= !char.IsWhiteSpace(c);
                sql.Append(c);
            }
        }

        Flush();
        return [.. statements];

        void Flush()
        {
            if (hasCode)
            {
                statements.Add(new PositionalStatement(sql.ToString().Trim(), [.. names]));
            }

            sql.Clear();
            names.Clear();
            hasCode = false;
        }
    }

    /// <summary>The index of the quote that closes the one at <paramref name="start"/> (a doubled quote is part of the text), or -1.</summary>
    private static int QuoteEnd(string text, int start)
    {
        var quote = text[start];
        for (var i = start + 1; i < text.Length; i++)
        {
            if (text[i] != quote)
            {
                continue;
            }

            if (i + 1 < text.Length && text[i + 1] == quote)
            {
                i++;
                continue;
            }

            return i;
        }

        return -1;
    }
}

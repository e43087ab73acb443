using System.Collections;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting.Auth;

namespace Parley.Server.Hosting;

/// <summary>
/// Keeps bearer tokens out of the logs. Browsers pass their token on the WebSocket URL (<c>/ws?access_token=…</c>),
/// and the host's request lines ("Request starting/finished", category <c>Microsoft.AspNetCore.Hosting.Diagnostics</c>)
/// print the whole query string before any Parley code runs, so the token cannot be removed from the request in time.
/// Instead every logger Parley's host creates is wrapped: a log entry whose values or message carry an
/// <c>access_token</c> query parameter is passed on with that parameter's value replaced by <c>[redacted]</c>, and
/// every other entry is passed on untouched (the check is a scan of the entry's string values, made only for
/// entries that are enabled). Other query parameters (<c>cursor</c>, <c>device_id</c>) stay readable.
/// Exceptions are passed on as they are: no exception Parley or the framework throws carries the query string.
/// </summary>
internal static partial class LogRedaction
{
    public const string Redacted = "[redacted]";

    /// <summary>Replaces the host's logger factory with one whose loggers redact tokens (providers and filters unchanged).</summary>
    public static IServiceCollection AddLogRedaction(this IServiceCollection services)
    {
        services.Replace(ServiceDescriptor.Singleton<ILoggerFactory>(provider => new RedactingLoggerFactory(new LoggerFactory(
            provider.GetServices<ILoggerProvider>(),
            provider.GetRequiredService<IOptionsMonitor<LoggerFilterOptions>>(),
            provider.GetService<IOptions<LoggerFactoryOptions>>(),
            provider.GetService<IExternalScopeProvider>()))));
        return services;
    }

    /// <summary>
    /// <paramref name="text"/> with the value of every <c>access_token</c> query parameter redacted; the same instance when
    /// there is none. Parameter names are compared as ASP.NET Core reads them: case-insensitively and after percent-decoding
    /// (<c>ACCESS%5Ftoken</c> is the same parameter), so no spelling the server accepts escapes redaction.
    /// </summary>
    public static string Redact(string text)
    {
        if (text.Length < 3 || text.AsSpan().IndexOfAny('?', '&') < 0 || !text.Contains('=', StringComparison.Ordinal))
        {
            return text;
        }

        // Without a percent escape a parameter's name can only spell access_token literally (a '+' decodes to a space):
        // the usual request line (cursor, device_id) is passed on without running the expression, which cost 1.9 % of
        // the server's samples in a reconnect storm.
        if (!text.Contains('%', StringComparison.Ordinal) && !text.Contains(AuthSetup.QueryTokenParameter, StringComparison.OrdinalIgnoreCase))
        {
            return text;
        }

        return QueryParameter().Replace(text, match =>
        {
            var name = match.Groups["name"].Value;
            string decoded;
            try
            {
                decoded = Uri.UnescapeDataString(name.Replace('+', ' '));
            }
            catch (UriFormatException)
            {
                decoded = name;
            }

            return string.Equals(decoded, AuthSetup.QueryTokenParameter, StringComparison.OrdinalIgnoreCase)
                ? $"{match.Groups["lead"].Value}{name}={Redacted}"
                : match.Value;
        });
    }

    // A query parameter inside any text (a URL, a request line, a bare query string): name and value end at '&', '#',
    // whitespace or a quote.
    [GeneratedRegex("""(?<lead>[?&])(?<name>[^?=&#\s'"]+)=(?<value>[^&#\s'"]*)""", RegexOptions.CultureInvariant)]
    private static partial Regex QueryParameter();

    private static bool NeedsRedaction(object? value, out string? redacted)
    {
        redacted = null;
        var text = value switch
        {
            string s => s,
            // Numbers, dates, ids and enums cannot carry a query string.
            null or IFormattable => null,
            // QueryString, PathString, Uri and the like print their text.
            _ => value.ToString(),
        };
        if (text is null)
        {
            return false;
        }

        redacted = Redact(text);
        return !ReferenceEquals(redacted, text);
    }

    private sealed class RedactingLoggerFactory(ILoggerFactory inner) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => new RedactingLogger(inner.CreateLogger(categoryName));

        public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

        public void Dispose() => inner.Dispose();
    }

    private sealed class RedactingLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull =>
            state is IReadOnlyList<KeyValuePair<string, object?>> values && RedactedState.TryCreate(values, state.ToString, out var redacted)
                ? inner.BeginScope(redacted)
                : inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!inner.IsEnabled(logLevel))
            {
                return;
            }

            if (state is IReadOnlyList<KeyValuePair<string, object?>> values)
            {
                if (RedactedState.TryCreate(values, () => formatter(state, exception), out var redacted))
                {
                    inner.Log(logLevel, eventId, redacted, exception, static (s, _) => s.ToString());
                    return;
                }
            }
            else if (NeedsRedaction(formatter(state, exception), out var message))
            {
                // A state of another shape: only its message can be redacted.
                inner.Log(logLevel, eventId, message!, exception, static (s, _) => s);
                return;
            }

            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }

    /// <summary>A log entry's values and message with tokens redacted (the message template is kept).</summary>
    private sealed class RedactedState(List<KeyValuePair<string, object?>> values, string message) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public int Count => values.Count;

        public KeyValuePair<string, object?> this[int index] => values[index];

        /// <summary>Null (and no allocation) when nothing needs redacting, the usual case.</summary>
        public static bool TryCreate(IReadOnlyList<KeyValuePair<string, object?>> state, Func<string?> format, out RedactedState redacted)
        {
            redacted = null!;
            List<KeyValuePair<string, object?>>? copy = null;
            for (var i = 0; i < state.Count; i++)
            {
                var (key, value) = state[i];
                // The template has names, not values (and must stay unchanged for structured sinks).
                if (key == "{OriginalFormat}" || !NeedsRedaction(value, out var text))
                {
                    continue;
                }

                copy ??= [.. state];
                copy[i] = new KeyValuePair<string, object?>(key, text);
            }

            if (copy is null)
            {
                return false;
            }

            redacted = new RedactedState(copy, Redact(format() ?? string.Empty));
            return true;
        }

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => values.GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => message;
    }
}

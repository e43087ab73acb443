using Microsoft.Extensions.Logging;

namespace Parley.Client.Tests.Infrastructure;

/// <summary>One log call: the event's name (the [LoggerMessage] method) and its named values.</summary>
internal sealed record LogEntry(string? Name, IReadOnlyDictionary<string, object?> Values, string Message);

/// <summary>
/// Keeps what <see cref="ParleyRealtime"/> logs, for tests that must know which path the client took (a gap it
/// held back, say) where its events alone would look the same either way. Tests wait for an entry, never sleep.
/// </summary>
internal sealed class RecordingLogger : ILogger
{
    private readonly Lock _lock = new();
    private readonly List<LogEntry> _entries = [];
    // Completed (and replaced) by each log call: what a waiter awaits between looks at the entries.
    private TaskCompletionSource _logged = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public IReadOnlyList<LogEntry> Entries
    {
        get
        {
            lock (_lock)
            {
                return [.. _entries];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var values = state is IReadOnlyList<KeyValuePair<string, object?>> pairs
            ? pairs.ToDictionary(p => p.Key, p => p.Value)
            : [];
        TaskCompletionSource logged;
        lock (_lock)
        {
            _entries.Add(new LogEntry(eventId.Name, values, formatter(state, exception)));
            logged = _logged;
            _logged = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        logged.TrySetResult();
    }

    /// <summary>Asserts that nothing named <paramref name="name"/> is logged within <paramref name="within"/> (an absence has no signal to wait for).</summary>
    public async Task AssertNotLoggedAsync(string name, TimeSpan within)
    {
        await Task.Delay(within, TestContext.Current.CancellationToken);
        Assert.DoesNotContain(Entries, e => e.Name == name);
    }

    /// <summary>The first entry named <paramref name="name"/> that matches, waiting for it up to <paramref name="timeout"/>.</summary>
    public async Task<LogEntry> WaitForAsync(string name, Func<LogEntry, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task logged;
            lock (_lock)
            {
                if (_entries.FirstOrDefault(e => e.Name == name && match(e)) is { } entry)
                {
                    return entry;
                }

                logged = _logged.Task;
            }

            var left = deadline - DateTime.UtcNow;
            try
            {
                await logged.WaitAsync(left > TimeSpan.Zero ? left : TimeSpan.Zero, TestContext.Current.CancellationToken);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"No {name} was logged within {timeout}; logged: {string.Join(" | ", Entries.Select(e => e.Message))}");
            }
        }
    }
}

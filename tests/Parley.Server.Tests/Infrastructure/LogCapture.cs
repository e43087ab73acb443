using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A logger provider that keeps every entry a test server writes: its category, message, values and scopes, as the
/// console (or any other provider) would receive them.
/// </summary>
internal sealed class LogCapture : ILoggerProvider, ISupportExternalScope
{
    private readonly ConcurrentQueue<Entry> _entries = new();
    private readonly Lock _lock = new();
    private readonly List<(Func<Entry, bool> Predicate, TaskCompletionSource<Entry> Found)> _waiters = [];
    private IExternalScopeProvider? _scopes;

    public IReadOnlyList<Entry> Entries => [.. _entries];

    /// <summary>The first entry (already written or still to come) that matches, within <paramref name="timeout"/>.</summary>
    public Task<Entry> WaitForAsync(Func<Entry, bool> predicate, TimeSpan timeout)
    {
        var found = new TaskCompletionSource<Entry>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_entries.FirstOrDefault(predicate) is { } entry)
            {
                return Task.FromResult(entry);
            }

            _waiters.Add((predicate, found));
        }

        return found.Task.WaitAsync(timeout, TestContext.Current.CancellationToken);
    }

    private void Add(Entry entry)
    {
        lock (_lock)
        {
            _entries.Enqueue(entry);
            foreach (var waiter in _waiters.Where(w => w.Predicate(entry)).ToList())
            {
                _waiters.Remove(waiter);
                waiter.Found.TrySetResult(entry);
            }
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    public void Dispose()
    {
    }

    /// <summary>One log entry: everything a provider can print of it, in one text (for "does not contain" checks).</summary>
    internal sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, string Everything);

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => owner._scopes?.Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            var all = new StringBuilder(message).Append('\n');
            if (state is IEnumerable<KeyValuePair<string, object?>> values)
            {
                foreach (var (key, value) in values)
                {
                    all.Append(key).Append('=').Append(value).Append('\n');
                }
            }

            owner._scopes?.ForEachScope(
                (scope, text) =>
                {
                    text.Append("scope: ").Append(scope).Append('\n');
                    if (scope is IEnumerable<KeyValuePair<string, object?>> pairs)
                    {
                        foreach (var (key, value) in pairs)
                        {
                            text.Append(key).Append('=').Append(value).Append('\n');
                        }
                    }
                },
                all);
            all.Append(exception);
            owner.Add(new Entry(category, logLevel, eventId, message, all.ToString()));
        }
    }
}

using System.Collections.Concurrent;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Parley.Server.Observability;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>
/// What this instance knows of each sink: whether it holds the sink's lease, the backlog it last measured, the last
/// failure. Read by /ready and /metrics (never a database query on a probe or a scrape).
/// </summary>
internal sealed class EventStreamStatus
{
    private readonly ConcurrentDictionary<string, SinkState> _sinks = new(StringComparer.Ordinal);

    public EventStreamStatus(ParleyMetrics metrics, TimeProvider time)
    {
        metrics.ObserveEventSinks(() => [.. _sinks.Select(s => new EventSinkLag(
            s.Key,
            s.Value.Backlog?.Total ?? 0,
            s.Value.Backlog?.OldestAt is { } oldest ? Math.Max(0, (time.GetUtcNow() - oldest).TotalSeconds) : 0))]);
    }

    public SinkState For(string sink) => _sinks.GetOrAdd(sink, _ => new SinkState());

    public IReadOnlyDictionary<string, SinkState> Sinks => _sinks;

    internal sealed class SinkState
    {
        public volatile bool IsLeader;

        public volatile RelayBacklog? Backlog;

        /// <summary>Why the last publish failed; null after a success.</summary>
        public volatile string? LastFailure;
    }
}

/// <summary>
/// The <c>events</c> readiness check: Degraded (HTTP 200 still: messaging works) with the backlog's size and age when a sink
/// fails here, or its backlog passed <see cref="EventsOptions.BacklogAlert"/> or waited longer than
/// <see cref="EventsOptions.BacklogAgeAlert"/> (seen by every instance); Healthy otherwise.
/// </summary>
internal sealed class EventsHealthCheck(EventStreamStatus status, IOptions<EventsOptions> options, TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var problems = new List<string>();
        var summary = new List<string>();
        foreach (var (sink, state) in status.Sinks.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var backlog = state.Backlog;
            var age = backlog?.OldestAt is { } oldest ? Math.Max(0, (time.GetUtcNow() - oldest).TotalSeconds) : 0;
            var line = $"{sink}: backlog {backlog?.Total ?? 0} ({backlog?.EventCount ?? 0} events, {backlog?.ReceiptCount ?? 0} receipts), oldest {age:0} s";
            summary.Add(line);
            var above = backlog is not null && backlog.Total > options.Value.BacklogAlert;
            if (above)
            {
                line += $"; above Events:BacklogAlert ({options.Value.BacklogAlert})";
            }

            if (backlog?.Total > 0 && age > options.Value.BacklogAgeAlert.TotalSeconds)
            {
                // Also on instances that do not publish this sink (their own LastFailure is cleared): its publisher is stuck.
                line += $"; older than Events:BacklogAgeAlert ({options.Value.BacklogAgeAlert:c})";
                above = true;
            }

            if (state.LastFailure is { } failure)
            {
                problems.Add($"{line}; publishing fails: {failure}");
            }
            else if (above)
            {
                problems.Add(line);
            }
        }

        return Task.FromResult(problems.Count > 0
            ? HealthCheckResult.Degraded("Event stream degraded: " + string.Join("; ", problems))
            : HealthCheckResult.Healthy(summary.Count == 0 ? "No event sink configured." : string.Join("; ", summary)));
    }
}

using Parley.Bench.Options;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// One scenario in one process: set-up (users, conversations, connections; not measured), the run from a start time
/// shared by every process, a progress snapshot at any time, and this process's part of the result.
/// </summary>
internal interface IScenario : IAsyncDisposable
{
    Task SetUpAsync(CancellationToken cancellationToken);

    /// <summary>Runs the scenario; <paramref name="start"/> is a <see cref="System.Diagnostics.Stopwatch"/> timestamp, possibly a little ahead.</summary>
    Task RunAsync(long start, CancellationToken cancellationToken);

    ProgressSnapshot Snapshot();

    BenchResult Result();
}

/// <summary>When, relative to the start, the server's processes are sampled (seconds; an absent end means "when the run is over").</summary>
internal sealed record ServerWindow(double? BaselineS, double StartS, double? EndS)
{
    public static ServerWindow For(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Scenario switch
        {
            ScenarioKind.Connections => new ServerWindow(0, ConnectionsScenario.HoldStartSeconds(options), ConnectionsScenario.HoldStartSeconds(options) + options.DurationSeconds),
            ScenarioKind.Reconnect or ScenarioKind.Relay => new ServerWindow(null, 0, null),
            _ => new ServerWindow(null, options.WarmupSeconds, options.WarmupSeconds + options.DurationSeconds),
        };
    }
}

internal static class Scenario
{
    public static IScenario Create(RunContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Options.Scenario switch
        {
            ScenarioKind.Chat => new ConversationScenario(context, membersPerConversation: 2),
            ScenarioKind.Group => new ConversationScenario(context, context.Options.GroupSize),
            ScenarioKind.Connections => new ConnectionsScenario(context),
            ScenarioKind.Relay => new RelayScenario(context),
            _ => new ReconnectScenario(context),
        };
    }

    public static string Name(ScenarioKind scenario) => scenario.ToString().ToLowerInvariant();
}

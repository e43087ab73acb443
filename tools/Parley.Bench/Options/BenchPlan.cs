namespace Parley.Bench.Options;

/// <summary>
/// How a run divides into units (chat: pairs, group: groups, connections: connections, reconnect: devices) and
/// which slice of them, and of the rates, one process carries. A single process carries all of them.
/// </summary>
internal sealed record BenchPlan(int FirstUnit, int UnitCount, int TotalUnits, double Rate, double ConnectRate)
{
    public static BenchPlan For(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var total = Units(options);
        var processes = options.IsChild ? options.Processes : 1;
        var index = options.ChildIndex ?? 0;
        var (first, count) = Slice(total, processes, index);
        var share = (double)count / total;
        return new BenchPlan(first, count, total, options.Rate * share, options.ConnectRate * share);
    }

    /// <summary>The units of slice <paramref name="index"/> of <paramref name="processes"/>: as equal as whole units allow.</summary>
    public static (int First, int Count) Slice(int total, int processes, int index)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(processes, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, processes);
        var first = (int)((long)total * index / processes);
        var end = (int)((long)total * (index + 1) / processes);
        return (first, end - first);
    }

    public static int Units(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Scenario switch
        {
            ScenarioKind.Chat => options.Users / 2,
            ScenarioKind.Group => options.Users / options.GroupSize,
            ScenarioKind.Relay => 1,
            _ => options.Connections,
        };
    }

    public static string UnitName(ScenarioKind scenario) => scenario switch
    {
        ScenarioKind.Chat => "pairs",
        ScenarioKind.Group => "groups",
        ScenarioKind.Connections => "connections",
        ScenarioKind.Relay => "sinks",
        _ => "devices",
    };
}

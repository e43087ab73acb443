using Parley.Bench.Options;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class ServerWindowTests
{
    [Theory]
    [InlineData(false, 5, 30)]
    [InlineData(true, 2.5, 7)]
    [InlineData(false, 0, 20)]
    public void For_ChatAndGroup_SamplesTheServerOverTheMeasuredWindowOfTheSchedule(bool group, double warmup, double duration)
    {
        var options = new BenchOptions { Scenario = group ? ScenarioKind.Group : ScenarioKind.Chat, WarmupSeconds = warmup, DurationSeconds = duration, Rate = 100 };
        var measured = Schedule.WarmupThenMeasured(options.Rate, warmup, duration).Segments.Single(s => s.Measured);

        var window = ServerWindow.For(options);

        Assert.Null(window.BaselineS);
        Assert.Equal(measured.StartSeconds, window.StartS, 9);
        Assert.Equal(measured.StartSeconds + measured.Count / measured.Rate, window.EndS!.Value, 9);
    }
}

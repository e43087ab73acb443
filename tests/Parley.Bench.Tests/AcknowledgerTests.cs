using Parley.Bench.Scenarios;

namespace Parley.Bench.Tests;

public sealed class AcknowledgerTests
{
    [Theory]
    [InlineData(250, 10, 25)]
    [InlineData(1000, 40, 25)]
    [InlineData(60, 2, 30)] // ticks of whole milliseconds: 25 turns of 2.4 ms would run every 50 ms
    [InlineData(30, 1, 30)]
    [InlineData(10, 1, 10)] // below 25 ms: a turn a millisecond (a timer cannot tick faster)
    [InlineData(1, 1, 1)]
    public void Ticks_AddUpToTheInterval_InWholeMilliseconds(long intervalMs, long tickMs, int phases)
    {
        Assert.Equal((tickMs, phases), Acknowledger.Ticks(intervalMs));
        Assert.Equal(intervalMs, tickMs * phases);
    }
}

using Parley.Bench.Options;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class BenchPlanTests
{
    [Theory]
    [InlineData(10, 3)]
    [InlineData(500, 4)]
    [InlineData(7, 7)]
    [InlineData(1001, 16)]
    public void Slice_CoversEveryUnitOnce(int total, int processes)
    {
        var next = 0;
        for (var k = 0; k < processes; k++)
        {
            var (first, count) = BenchPlan.Slice(total, processes, k);
            Assert.Equal(next, first);
            Assert.InRange(count, total / processes, total / processes + 1);
            next += count;
        }

        Assert.Equal(total, next);
    }

    [Fact]
    public void For_AChild_TakesItsShareOfTheRates()
    {
        var options = new BenchOptions { Scenario = ScenarioKind.Chat, Users = 1000, Rate = 900, ConnectRate = 300, Processes = 3, ChildIndex = 2 };

        var plan = BenchPlan.For(options);

        Assert.Equal((333, 167, 500), (plan.FirstUnit, plan.UnitCount, plan.TotalUnits));
        Assert.Equal(900.0 * 167 / 500, plan.Rate, 9);
        Assert.Equal(300.0 * 167 / 500, plan.ConnectRate, 9);
    }

    [Fact]
    public void For_OneProcess_CarriesEverything()
    {
        var plan = BenchPlan.For(new BenchOptions { Scenario = ScenarioKind.Group, Users = 1000, GroupSize = 100, Rate = 100, Processes = 4 });

        Assert.Equal((0, 10, 10, 100.0), (plan.FirstUnit, plan.UnitCount, plan.TotalUnits, plan.Rate));
    }
}

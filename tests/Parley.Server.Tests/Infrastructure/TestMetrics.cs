using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Observability;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// <see cref="ParleyMetrics"/> on a meter factory of its own, so that a test's collectors see only its own measurements
/// (meters of one factory are shared by name), on a fake clock.
/// </summary>
internal sealed class TestMetrics : IDisposable
{
    private readonly ServiceProvider _services;

    public TestMetrics()
    {
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        Factory = _services.GetRequiredService<IMeterFactory>();
        Metrics = new ParleyMetrics(Factory, Time);
    }

    /// <summary>For code under test that needs metrics nobody inspects.</summary>
    public static ParleyMetrics Unobserved { get; } = new TestMetrics().Metrics;

    public FakeTimeProvider Time { get; } = new();

    public IMeterFactory Factory { get; }

    public ParleyMetrics Metrics { get; }

    /// <summary>A collector of one of Parley's instruments (by its OpenTelemetry name).</summary>
    public MetricCollector<T> Collect<T>(string instrument)
        where T : struct => new(Factory, ParleyMetrics.MeterName, instrument);

    public void Dispose() => _services.Dispose();
}

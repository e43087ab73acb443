using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Protocol;

namespace Parley.Server.Realtime;

internal static class RealtimeSetup
{
    public static IHostApplicationBuilder AddRealtime(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<RealtimeOptions>().BindConfiguration(RealtimeOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ConnectionHub>();
        services.AddSingleton<Heartbeats>();
        services.AddKeyedSingleton(RateLimits.FrameRate, (services, _) =>
        {
            var options = services.GetRequiredService<IOptions<RealtimeOptions>>().Value;
            return RateLimits.PerUser(services.GetRequiredService<TimeProvider>(), options.InboundFramesPerSecond, options.InboundBurst);
        });
        // First in the pipeline, so before the WebSocket middleware takes the upgrade features (HeartbeatUpgrade).
        services.AddTransient<IStartupFilter, HeartbeatUpgrade.First>();
        services.AddHostedService<GracefulClose>();
        services.AddHealthChecks().AddCheck<DrainHealthCheck>("connections", tags: [HealthApi.ReadyTag]);
        return builder;
    }

    /// <summary>Readiness fails while the instance drains (shutting down): no new sockets or requests should come here.</summary>
    private sealed class DrainHealthCheck(ConnectionHub hub) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(
            HealthCheckContext context, CancellationToken cancellationToken) =>
            Task.FromResult(hub.Draining
                ? HealthCheckResult.Unhealthy("Draining: this instance is shutting down; connect to another one.")
                : HealthCheckResult.Healthy($"Accepting connections ({hub.Count} open)."));
    }

    /// <summary>
    /// On shutdown, before anything stops (the server, and the trackers and workers that sockets use), every socket
    /// is asked to close with 1001 and the closes are awaited: each ends when its client answers the close, or when
    /// Realtime:CloseTimeout aborts it, and its session's clean-up ran; the host's shutdown timeout bounds the whole wait.
    /// </summary>
    private sealed class GracefulClose(ConnectionHub hub, IOptions<RealtimeOptions> options) : IHostedLifecycleService
    {
        public Task StoppingAsync(CancellationToken cancellationToken) =>
            hub.CloseAllAsync(CloseCodes.GoingAway, "server shutting down", Backstop(options.Value), cancellationToken);

        /// <summary>
        /// Longer than the slowest way a socket ends by itself (a write in progress runs to its send timeout, the close
        /// frame's write and the wait for the peer's answer each to the close timeout): the bound must never come
        /// before a socket's own abort, or services would stop under a socket still open.
        /// </summary>
        internal static TimeSpan Backstop(RealtimeOptions options) =>
            options.SendTimeout + (2 * options.CloseTimeout) + CleanUp;

        // A session's clean-up after its socket ended: its user's fan-out route and presence (a Redis round trip, bounded
        // by the fan-out's own timeout of 2 s by default), then its removal from the hub, which ends the drain.
        private static readonly TimeSpan CleanUp = TimeSpan.FromSeconds(5);

        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}

using System.Diagnostics.Metrics;
using System.Reflection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Parley.Server.Observability;

/// <summary>
/// Metrics (Parley's own, ASP.NET Core's, the runtime's) for Prometheus at <c>/metrics</c>, and traces over OTLP when a
/// collector is configured. docs/operations.md describes every metric and span.
/// </summary>
internal static partial class ObservabilitySetup
{
    public const string ServiceName = "parley";

    public static IHostApplicationBuilder AddObservability(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<MetricsOptions>().BindConfiguration(MetricsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<MetricsOptions>, MetricsOptionsValidator>();
        services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.SectionName).ValidateOnStart();
        services.AddSingleton<IValidateOptions<TelemetryOptions>, TelemetryOptionsValidator>();
        services.AddSingleton<ParleyMetrics>();

        // What is exported decides what is registered, so these two settings are read now (and validated at start).
        var metrics = builder.Configuration.GetSection(MetricsOptions.SectionName).Get<MetricsOptions>() ?? new MetricsOptions();
        var otlp = builder.Configuration.GetSection(TelemetryOptions.SectionName).Get<TelemetryOptions>()?.Otlp ?? new OtlpSettings();
        var version = typeof(ObservabilitySetup).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        var telemetry = services.AddOpenTelemetry().ConfigureResource(resource => resource.AddService(ServiceName, serviceVersion: version));
        if (metrics.Enabled)
        {
            // Nothing listens to the instruments unless metrics are on: off, they cost one branch each.
            services.AddSingleton<MetricsAccess>();
            services.ConfigureOpenTelemetryMeterProvider(KeepOwnInstrumentsOnly);
            telemetry.WithMetrics(meters => meters
                .AddMeter(ParleyMetrics.MeterName)
                .AddAspNetCoreInstrumentation()
                .AddRuntimeInstrumentation()
                .AddPrometheusExporter());
            if (metrics.Port is { } port)
            {
                services.AddSingleton<IStartupFilter>(new MetricsPortListener(port));
            }
        }

        if (otlp.Endpoint is { } endpoint)
        {
            // Without a collector no source is listened to: spans are never even created.
            telemetry.WithTracing(tracing => tracing
                .AddSource(ParleyActivitySource.Name)
                .AddAspNetCoreInstrumentation(aspnet => aspnet.Filter = context => !IsProbeOrScrape(context.Request.Path))
                .AddOtlpExporter(exporter =>
                {
                    exporter.Endpoint = endpoint;
                    exporter.Protocol = otlp.Protocol == OtlpTransport.HttpProtobuf ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
                }));
        }

        return builder;
    }

    /// <summary>
    /// <c>/metrics</c>, answered only to the allowed networks (and only on <see cref="MetricsOptions.Port"/> when set);
    /// everyone else gets the 404 of an unknown path. Not part of the public API description.
    /// </summary>
    public static IEndpointRouteBuilder MapMetrics(this IEndpointRouteBuilder app)
    {
        // Registered only when metrics are enabled (AddObservability).
        if (app.ServiceProvider.GetService<MetricsAccess>() is not { } access)
        {
            return app;
        }

        app.MapPrometheusScrapingEndpoint(
                MetricsOptions.Path,
                meterProvider: null,
                configureBranchedPipeline: branch => branch.Use((context, next) => access.Allows(context) ? next(context) : MetricsAccess.RefuseAsync(context)),
                optionsName: null)
            .ExcludeFromDescription();
        return app;
    }

    /// <summary>
    /// Keeps another host's instruments out of this one's metrics. The SDK subscribes to meters by name, and every host
    /// in a process (the test servers, for one) makes its own <c>Parley.Server</c> and ASP.NET Core meters through its
    /// own <see cref="IMeterFactory"/>: without this, one host's scrape would count another's frames, and when that host
    /// disposes its meters the SDK ends the shared streams, so this host's series would vanish too.
    /// </summary>
    private static void KeepOwnInstrumentsOnly(IServiceProvider services, MeterProviderBuilder builder)
    {
        var own = services.GetRequiredService<IMeterFactory>();
        builder.AddView(instrument => instrument.Meter.Scope is IMeterFactory factory && !ReferenceEquals(factory, own) ? MetricStreamConfiguration.Drop : null);
    }

    private static bool IsProbeOrScrape(PathString path) =>
        path.StartsWithSegments(MetricsOptions.Path) || path.StartsWithSegments("/health") || path.StartsWithSegments("/ready");

    /// <summary>
    /// The metrics port: added to the addresses the server listens on, beside those of <c>Urls</c> (an endpoint
    /// configured in code would replace them), and answering <c>/metrics</c> only. Runs as the pipeline is built: after
    /// the host has filled in the addresses, before the server binds them; its middleware runs before any other.
    /// </summary>
    private sealed class MetricsPortListener(int port) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            var addresses = app.ApplicationServices.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            if (addresses is { IsReadOnly: false })
            {
                if (addresses.Any(address => BindingAddress.Parse(address).Port == port))
                {
                    throw new InvalidOperationException(
                        $"Metrics:Port {port} is also a port of Urls ({string.Join(";", addresses)}); choose a port of its own for the metrics.");
                }

                if (addresses.Count == 0)
                {
                    // No address configured means Kestrel's default, which one added address would silently replace.
                    addresses.Add("http://localhost:5000");
                }

                addresses.Add($"http://*:{port}");
            }

            // The metrics port is for scrapes: the API and the WebSocket are not served there.
            app.Use((context, nextMiddleware) =>
                context.Connection.LocalPort == port && !context.Request.Path.Equals(MetricsOptions.Path, StringComparison.OrdinalIgnoreCase)
                    ? MetricsAccess.RefuseAsync(context)
                    : nextMiddleware(context));
            next(app);
        };
    }
}

using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Storage;

namespace Parley.Server.Events;

internal static class EventsSetup
{
    public const string WebhookClient = "parley-webhooks";

    public static IHostApplicationBuilder AddEvents(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<EventsOptions>().BindConfiguration(EventsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<EventsOptions>, EventsOptionsValidator>();
        // The receipt log is kept only while something publishes it.
        services.AddOptions<ReceiptLogOptions>().Configure<IOptions<EventsOptions>, IEnumerable<IEventSink>>(
            (receipts, events, added) => receipts.Enabled = events.Value.KafkaEnabled || events.Value.Webhooks.Count > 0 || added.Any());
        // "No device connected" anywhere in the deployment: the fan-out's presence.
        services.TryAddSingleton<IDeviceDirectory, FanoutDeviceDirectory>();
        services.AddSingleton<EventStreamStatus>();
        services.AddSingleton<EventSinks>();
        // A redirect is an answer other than 2xx (followed, a POST turned into a GET would count a login page's 200 as
        // delivered); each POST has its own timeout (Events:Webhooks:<name>:Timeout), so none from the client; and the
        // sink keeps its client for good, so connections are renewed to follow an endpoint's DNS changes.
        // No request logging: a line or four per record at Information, naming the endpoint's path, which for many
        // services carries its token; the sink logs failures itself.
        services.AddHttpClient(WebhookClient)
            .RemoveAllLoggers()
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            });
        services.AddHostedService<EventRelay>();
        // On /ready only while the stream is on: a deployment without it has nothing to report.
        services.AddSingleton<EventsHealthCheck>();
        services.AddOptions<HealthCheckServiceOptions>().Configure<EventSinks>((health, sinks) =>
        {
            if (sinks.All.Count > 0)
            {
                health.Registrations.Add(new HealthCheckRegistration(
                    "events", provider => provider.GetRequiredService<EventsHealthCheck>(), failureStatus: null, tags: [HealthApi.ReadyTag]));
            }
        });
        return builder;
    }
}

/// <summary>
/// The configured sinks: Kafka when <c>Events:Kafka:BootstrapServers</c> is set, one per webhook endpoint, and any
/// <see cref="IEventSink"/> registered in the container (tests register an <see cref="InMemoryEventSink"/>). Owns the ones
/// it creates.
/// </summary>
internal sealed class EventSinks : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public EventSinks(
        IEnumerable<IEventSink> registered, IOptions<EventsOptions> options, IChatStore store, IHttpClientFactory http, TimeProvider time,
        ILoggerFactory loggers)
    {
        var all = registered.ToList();
        var settings = options.Value;
        if (settings.KafkaEnabled)
        {
            var kafka = new KafkaEventSink(
                settings.Kafka, $"parley-{Environment.MachineName}", store.AddDeadLetterAsync, time, loggers.CreateLogger<KafkaEventSink>());
            _owned.Add(kafka);
            all.Add(kafka);
        }

        foreach (var (endpoint, webhook) in settings.Webhooks.OrderBy(w => w.Key, StringComparer.Ordinal))
        {
            all.Add(new WebhookSink(endpoint, webhook, http.CreateClient(EventsSetup.WebhookClient), store, time, loggers.CreateLogger<WebhookSink>()));
        }

        All = all;
    }

    public IReadOnlyList<IEventSink> All { get; }

    public void Dispose()
    {
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }
    }
}

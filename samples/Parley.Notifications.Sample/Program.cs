namespace Parley.Notifications.Sample;

/// <summary>
/// Reads parley.notifications and logs the push each record would send (docs/events.md, "Consumer sample"):
/// <c>dotnet run --project samples/Parley.Notifications.Sample -- --Kafka:BootstrapServers=localhost:9092</c>
/// </summary>
public static class NotificationsWorker
{
    public static async Task Main(string[] args) => await Build(args).RunAsync();

    /// <summary>The worker's host, with <see cref="IPushSender"/> replaceable (<paramref name="configure"/>).</summary>
    public static IHost Build(string[] args, Action<IServiceCollection>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(args);
        builder.Services.AddOptions<ConsumerOptions>().BindConfiguration(ConsumerOptions.SectionName)
            .Validate(o => !string.IsNullOrWhiteSpace(o.BootstrapServers), "Kafka:BootstrapServers is required (host:port of a broker).")
            .ValidateOnStart();
        builder.Services.AddSingleton<IPushSender, LoggingPushSender>();
        builder.Services.AddHostedService<NotificationConsumer>();
        configure?.Invoke(builder.Services);
        return builder.Build();
    }
}

using Microsoft.Extensions.Diagnostics.HealthChecks;
using Parley.Server.Hosting;
using Parley.Server.Realtime.Protocol;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Storage;

internal static partial class StorageSetup
{
    public const string DefaultSqliteConnectionString = "Data Source=parley.db";

    public static IHostApplicationBuilder AddStorage(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<StorageOptions>().BindConfiguration(StorageOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<StorageState>();
        builder.Services.AddSingleton<IChatStore>(services =>
        {
            var configuration = services.GetRequiredService<IConfiguration>();
            var connectionString = configuration.GetConnectionString("Sqlite");
            return new SqliteChatStore(string.IsNullOrWhiteSpace(connectionString) ? DefaultSqliteConnectionString : connectionString);
        });
        builder.Services.AddHostedService<StorageInitializer>();
        return builder;
    }
}

/// <summary>Whether the schema is migrated: until then the API answers 503 and /ready is unhealthy.</summary>
internal sealed class StorageState
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public void MarkReady() => _ready = true;
}

/// <summary>Applies migrations at start-up, before the server accepts requests.</summary>
internal sealed partial class StorageInitializer(IChatStore store, StorageState state, ILogger<StorageInitializer> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await store.MigrateAsync(cancellationToken);
        state.MarkReady();
        Log.Migrated(logger);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static partial class Log
    {
        [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Storage schema is current")]
        public static partial void Migrated(ILogger logger);
    }
}

internal sealed class StorageHealthCheck(IChatStore store, StorageState state) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!state.IsReady)
        {
            return HealthCheckResult.Unhealthy("Schema migrations have not finished.");
        }

        return await store.IsReadyAsync(cancellationToken)
            ? HealthCheckResult.Healthy()
            : HealthCheckResult.Unhealthy("The database does not answer.");
    }
}

/// <summary>Until the store is migrated, API and WebSocket requests get 503 with Retry-After instead of failing on missing tables.</summary>
internal sealed class StorageGate(RequestDelegate next, StorageState state)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var path = context.Request.Path;
        if (state.IsReady || !(path.StartsWithSegments("/api") || path.StartsWithSegments("/ws")))
        {
            await next(context);
            return;
        }

        context.Response.Headers.RetryAfter = "5";
        await ApiResults.Problem(new ApiError(503, ErrorCodes.ServiceUnavailable, "Storage is starting; retry shortly.")).ExecuteAsync(context);
    }
}

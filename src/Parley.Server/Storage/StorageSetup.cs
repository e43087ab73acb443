using System.Data.Common;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Parley.Server.Storage.Postgres;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Storage;

internal static class StorageSetup
{
    public const string DefaultSqliteConnectionString = "Data Source=parley.db";

    public static IHostApplicationBuilder AddStorage(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<StorageOptions>().BindConfiguration(StorageOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<StorageOptions>, StorageOptionsValidator>();
        builder.Services.AddSingleton<StorageState>();
        builder.Services.AddSingleton(services =>
        {
            var store = CreateStore(
                services.GetRequiredService<IOptions<StorageOptions>>().Value, services.GetRequiredService<IConfiguration>(),
                services.GetRequiredService<ILoggerFactory>());
            if (store is Sql.SqlChatStore sql)
            {
                sql.Metrics = services.GetService<Observability.ParleyMetrics>();
                sql.Metrics?.StartStoreErrors(Sql.SqlChatStore.FailingOperations);
                sql.KeepReceiptLog = services.GetService<IOptions<ReceiptLogOptions>>()?.Value.Enabled ?? false;
            }

            return store;
        });
        builder.Services.AddHostedService<StorageInitializer>();
        return builder;
    }

    /// <summary>The configured store (also used by the <c>migrate</c> command).</summary>
    public static IChatStore CreateStore(StorageOptions options, IConfiguration configuration, ILoggerFactory? loggers = null) => options.Provider switch
    {
        StorageProvider.Postgres => new PostgresChatStore(
            PostgresChatStore.CreateDataSource(configuration.GetConnectionString("Postgres")!), loggers?.CreateLogger<PostgresChatStore>()),
        _ => new SqliteChatStore(
            configuration.GetConnectionString("Sqlite") is { Length: > 0 } sqlite ? sqlite : DefaultSqliteConnectionString,
            exclusive: true,
            backgroundCheckpoints: options.SqliteBackgroundCheckpoints,
            writerCacheMiB: options.SqliteWriterCacheMiB,
            gatherWalWrites: options.SqliteGatherWalWrites),
    };

    /// <summary>Failures worth waiting out (the database is down or unreachable), as opposed to configuration errors.</summary>
    public static bool IsTransient(Exception exception) =>
        exception is not Sql.MigrationFailedException
        && (exception is DbException { IsTransient: true } or TimeoutException || exception.InnerException is TimeoutException or System.Net.Sockets.SocketException);
}

internal sealed class StorageOptionsValidator(IConfiguration configuration) : IValidateOptions<StorageOptions>
{
    public ValidateOptionsResult Validate(string? name, StorageOptions options)
    {
        if (options.Provider != StorageProvider.Postgres)
        {
            return ValidateOptionsResult.Success;
        }

        var connectionString = configuration.GetConnectionString("Postgres");
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            return ValidateOptionsResult.Fail(
                "Storage:Provider is Postgres but ConnectionStrings:Postgres is not set (e.g. ConnectionStrings__Postgres=\"Host=db;Username=parley;Password=...;Database=parley\").");
        }

        try
        {
            _ = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException ex)
        {
            return ValidateOptionsResult.Fail($"ConnectionStrings:Postgres is not a valid Npgsql connection string: {ex.Message}");
        }
    }
}

/// <summary>Whether the schema is migrated: until then the API answers 503 and /ready is unhealthy.</summary>
internal sealed class StorageState
{
    private volatile bool _ready;

    public bool IsReady => _ready;

    public void MarkReady() => _ready = true;
}

/// <summary>
/// Applies migrations at start-up, before the server accepts requests. When the database cannot be reached,
/// the server starts anyway (not ready: /ready and the API answer 503) and keeps trying in the background,
/// with back-off, until it can; a configuration error (not transient) stops start-up.
/// </summary>
internal sealed partial class StorageInitializer(
    IChatStore store, StorageState state, IOptions<StorageOptions> options, ILogger<StorageInitializer> logger) : IHostedService
{
    // Set when the first attempt failed; owned here, ended by StopAsync (which the host may call more than once).
    private Retrying? _retrying;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await MigrateAsync(cancellationToken);
        }
        catch (Exception ex) when (StorageSetup.IsTransient(ex))
        {
            Log.Unreachable(logger, ex.Message);
            var stopping = new CancellationTokenSource();
            _retrying = new Retrying(RetryAsync(stopping.Token), stopping);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _retrying, null) is not { } retrying)
        {
            return;
        }

        await retrying.Stopping.CancelAsync();
        await retrying.Task.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        retrying.Stopping.Dispose();
    }

    /// <summary>What a migration did, in the words of the start-up log and the <c>migrate</c> command.</summary>
    public static string Describe(StorageProvider provider, IReadOnlyList<string> applied) => applied.Count == 0
        ? $"{provider}: schema is current: no migrations to apply."
        : $"{provider}: applied {string.Join(", ", applied)}; schema is current.";

    private async Task MigrateAsync(CancellationToken cancellationToken)
    {
        var applied = await store.MigrateAsync(cancellationToken);
        state.MarkReady();
        if (applied.Count == 0)
        {
            Log.Current(logger, options.Value.Provider);
        }
        else
        {
            // Joined here, once at start-up: the JSON log would otherwise show the list's type name as the value.
            var names = string.Join(", ", applied);
            Log.Migrated(logger, options.Value.Provider, applied.Count, names);
        }
    }

    private async Task RetryAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(delay, stoppingToken);
                await MigrateAsync(stoppingToken);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.StillUnreachable(logger, delay.TotalSeconds, ex.Message);
                delay = TimeSpan.FromSeconds(Math.Min(30, delay.TotalSeconds * 2));
            }
        }
    }

    private sealed record Retrying(Task Task, CancellationTokenSource Stopping);

    private static partial class Log
    {
        [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Storage ({Provider}): schema is current: no migrations to apply")]
        public static partial void Current(ILogger logger, StorageProvider provider);

        [LoggerMessage(EventId = 5004, Level = LogLevel.Information, Message = "Storage ({Provider}): applied {Count} migrations ({Migrations}); schema is current")]
        public static partial void Migrated(ILogger logger, StorageProvider provider, int count, string migrations);

        [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "Storage is unreachable at start-up ({Reason}); serving 503 until it answers")]
        public static partial void Unreachable(ILogger logger, string reason);

        [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Storage still unreachable after waiting {DelaySeconds} s: {Reason}")]
        public static partial void StillUnreachable(ILogger logger, double delaySeconds, string reason);
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

        try
        {
            return await store.IsReadyAsync(cancellationToken)
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("The database does not answer.");
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("The database does not answer: " + ex.Message);
        }
    }
}

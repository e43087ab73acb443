using Parley.Server.Storage;

namespace Parley.Server.App;

/// <summary>
/// The commands that work on the configured database and exit, for operators: <c>migrate</c> (apply the schema
/// migrations before a deployment) and <c>new-epoch</c> (after restoring a backup). Both exit 0 on success and 1
/// when the database cannot be reached, a SQLite file is in use by a running server, a setting is invalid or the
/// work fails.
/// </summary>
internal static class StorageCommands
{
    public const string MigrateHelp =
        """
        usage: migrate [--Key=value ...]

        Applies the schema migrations of the configured database (Storage:Provider with its
        ConnectionStrings:Sqlite or ConnectionStrings:Postgres, as the server reads them), prints which
        were applied, and exits: 0 when the schema is current, 1 when the database cannot be reached, a
        SQLite file is in use by a running server, a setting is invalid or a migration fails. The server
        also migrates at start; this is for migrating before a deployment.

        Example: ConnectionStrings__Postgres="Host=db;Username=parley;Password=...;Database=parley" \
                   dotnet run --project src/Parley.Server -- migrate --Storage:Provider=Postgres

        """;

    public const string NewEpochHelp =
        """
        usage: new-epoch [--Key=value ...]

        Run after restoring the database from a backup (a copied SQLite file, a PostgreSQL dump, base
        backup or point-in-time recovery), before any server starts on it. Gives the event stream a new
        epoch: every device's cursor is then refused (sync_reset / 410 cursor_expired) and the device
        reloads its conversations, instead of trusting events the restored database no longer has.
        Migrates the schema first if needed. Exits 0 on success, 1 when the database cannot be reached,
        a SQLite file is in use by a running server or a setting is invalid. See docs/delivery.md.

        Example: dotnet run --project src/Parley.Server -- new-epoch

        """;

    public static Task<int> MigrateAsync(string[] args) =>
        RunAsync(args, "migrate", async (store, provider, cancellationToken) =>
            StorageInitializer.Describe(provider, await store.MigrateAsync(cancellationToken)));

    public static Task<int> NewEpochAsync(string[] args) =>
        RunAsync(args, "start a new epoch", async (store, provider, cancellationToken) =>
        {
            var applied = await store.MigrateAsync(cancellationToken);
            var epoch = await store.StartNewEpochAsync(cancellationToken);
            var migrated = applied.Count > 0 ? StorageInitializer.Describe(provider, applied) + Environment.NewLine : string.Empty;
            return $"{migrated}{provider}: new epoch {epoch}; every cursor issued before is refused, devices reload.";
        });

    /// <summary>Checks the settings, opens the configured store, runs <paramref name="work"/> and prints what it returns.</summary>
    private static async Task<int> RunAsync(string[] args, string verb, Func<IChatStore, StorageProvider, CancellationToken, Task<string>> work)
    {
        var builder = WebApplication.CreateBuilder(ParleyCommandLine.ServerOptions(args));
        if (!ConfigurationCheck.Report(builder.Configuration, $"Parley cannot {verb}"))
        {
            return 1;
        }

        var options = builder.Configuration.GetSection(StorageOptions.SectionName).Get<StorageOptions>() ?? new StorageOptions();
        var validation = new StorageOptionsValidator(builder.Configuration).Validate(null, options);
        if (validation.Failed)
        {
            await Console.Error.WriteLineAsync($"Parley cannot {verb}: " + validation.FailureMessage);
            return 1;
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        IChatStore? store = null;
        try
        {
            store = StorageSetup.CreateStore(options, builder.Configuration);
            await Console.Out.WriteLineAsync(await work(store, options.Provider, timeout.Token));
            return 0;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Whatever stopped it (the database, a directory it may not write, a malformed connection string, a schema
            // newer than this version), one line that says so, not a stack trace.
            await Console.Error.WriteLineAsync($"Parley cannot {verb} ({options.Provider}): {ex.Message}");
            return 1;
        }
        finally
        {
            if (store is IAsyncDisposable asyncDisposable)
            {
                await asyncDisposable.DisposeAsync();
            }
            else
            {
                (store as IDisposable)?.Dispose();
            }
        }
    }
}

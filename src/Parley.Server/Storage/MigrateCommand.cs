using Parley.Server.Hosting;

namespace Parley.Server.Storage;

/// <summary>
/// <c>dotnet run --project src/Parley.Server -- migrate</c> (or <c>Parley.Server migrate</c>): applies the
/// schema migrations of the configured store and exits: 0 when the schema is current, 1 when the database
/// cannot be reached, is in use by a server (SQLite), a setting is invalid or a migration fails. For operators
/// who migrate before deploying.
/// </summary>
internal static class MigrateCommand
{
    public const string HelpText =
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

    /// <summary>Runs the command with the arguments after <c>migrate</c>; returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var builder = WebApplication.CreateBuilder(ParleyCommandLine.ServerOptions(args));
        if (!ConfigurationCheck.Report(builder.Configuration, "Parley cannot migrate"))
        {
            return 1;
        }

        var options = builder.Configuration.GetSection(StorageOptions.SectionName).Get<StorageOptions>() ?? new StorageOptions();
        var validation = new StorageOptionsValidator(builder.Configuration).Validate(null, options);
        if (validation.Failed)
        {
            await Console.Error.WriteLineAsync("Parley cannot migrate: " + validation.FailureMessage);
            return 1;
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        IChatStore? store = null;
        try
        {
            store = StorageSetup.CreateStore(options, builder.Configuration);
            var applied = await store.MigrateAsync(timeout.Token);
            await Console.Out.WriteLineAsync(StorageInitializer.Describe(options.Provider, applied));
            return 0;
        }
        catch (Exception ex) when (ex is System.Data.Common.DbException or TimeoutException or OperationCanceledException or IOException)
        {
            await Console.Error.WriteLineAsync($"Parley cannot migrate ({options.Provider}): {ex.Message}");
            return 1;
        }
        finally
        {
            (store as IDisposable)?.Dispose();
            if (store is IAsyncDisposable asyncDisposable)
            {
                await asyncDisposable.DisposeAsync();
            }
        }
    }
}

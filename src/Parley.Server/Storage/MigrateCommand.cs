namespace Parley.Server.Storage;

/// <summary>
/// <c>dotnet run --project src/Parley.Server -- migrate</c> (or <c>Parley.Server migrate</c>): applies the
/// schema migrations of the configured store and exits: 0 when the schema is current, 1 when the database
/// cannot be reached or a migration fails. For operators who migrate before deploying.
/// </summary>
internal static class MigrateCommand
{
    /// <summary>The exit code when <paramref name="args"/> asked for a migration, else null.</summary>
    public static async Task<int?> TryRunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] != "migrate")
        {
            return null;
        }

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args[1..], ContentRootPath = AppContext.BaseDirectory });
        var options = builder.Configuration.GetSection(StorageOptions.SectionName).Get<StorageOptions>() ?? new StorageOptions();
        var validation = new StorageOptionsValidator(builder.Configuration).Validate(null, options);
        if (validation.Failed)
        {
            await Console.Error.WriteLineAsync("Parley cannot migrate: " + validation.FailureMessage);
            return 1;
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var store = StorageSetup.CreateStore(options, builder.Configuration);
        try
        {
            await store.MigrateAsync(timeout.Token);
            Console.WriteLine($"{options.Provider}: schema is current.");
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

using Microsoft.Extensions.DependencyInjection;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// Two Parley servers on one PostgreSQL database (a clone of the migrated template), as two instances behind
/// a load balancer; disposing stops both and drops the database.
/// </summary>
internal sealed class TwoInstances : IAsyncDisposable
{
    private readonly string _database;

    /// <param name="configure">Settings for each instance (0 or 1).</param>
    /// <param name="kestrel">Serve both on loopback ports (for WebSocket tests).</param>
    /// <param name="services">Services for each instance (0 or 1).</param>
    public TwoInstances(
        Action<int, Dictionary<string, string?>>? configure = null, bool kestrel = false, Action<int, IServiceCollection>? services = null)
    {
        _database = TestPostgres.CreateDatabase(fromTemplate: true);
        First = new ParleyFactory(s => configure?.Invoke(0, s), sharedPostgres: _database, services: s => services?.Invoke(0, s));
        Second = new ParleyFactory(s => configure?.Invoke(1, s), sharedPostgres: _database, services: s => services?.Invoke(1, s));
        if (kestrel)
        {
            First.StartKestrel();
            Second.StartKestrel();
        }
    }

    public ParleyFactory First { get; }

    public ParleyFactory Second { get; }

    public async ValueTask DisposeAsync()
    {
        await First.DisposeAsync();
        await Second.DisposeAsync();
        await TestPostgres.DropDatabaseAsync(_database);
    }
}

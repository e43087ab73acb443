using Npgsql;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary><c>Parley.Server migrate</c>: for operators who migrate before deploying. Exit 0 when current, 1 when it cannot.</summary>
[Trait("Store", "Independent")]
public sealed class MigrateCommandTests
{
    [Fact]
    public async Task Migrate_Sqlite_CreatesTheSchemaAndExits0_TwiceInARow()
    {
        var directory = Directory.CreateTempSubdirectory("parley-migrate-");
        try
        {
            var connection = $"--ConnectionStrings:Sqlite=Data Source={Path.Combine(directory.FullName, "parley.db")}";

            var first = await ConsoleCapture.RunAsync(() => MigrateCommand.TryRunAsync(["migrate", connection]));
            var second = await ConsoleCapture.RunAsync(() => MigrateCommand.TryRunAsync(["migrate", connection]));

            Assert.Equal(0, first.Result);
            Assert.Equal(0, second.Result);
            Assert.Contains("Sqlite: schema is current.", second.Output, StringComparison.Ordinal);
            using var store = new Storage.Sqlite.SqliteChatStore($"Data Source={Path.Combine(directory.FullName, "parley.db")}");
            await store.MigrateAsync(TestContext.Current.CancellationToken);
            Assert.Empty(await store.ListConversationsAsync("alice", null, 10, TestContext.Current.CancellationToken));
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Migrate_PostgresUnreachable_Exits1WithTheReason()
    {
        // A port nothing listens on: the connection is refused at once.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var run = await ConsoleCapture.RunAsync(() => MigrateCommand.TryRunAsync(
            ["migrate", "--Storage:Provider=Postgres", $"--ConnectionStrings:Postgres=Host=127.0.0.1;Port={port};Username=postgres;Timeout=3"]));

        Assert.Equal(1, run.Result);
        Assert.Contains("Parley cannot migrate (Postgres)", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_PostgresWithoutConnectionString_Exits1NamingTheSetting()
    {
        var run = await ConsoleCapture.RunAsync(() => MigrateCommand.TryRunAsync(["migrate", "--Storage:Provider=Postgres", "--ConnectionStrings:Postgres="]));

        Assert.Equal(1, run.Result);
        Assert.Contains("ConnectionStrings:Postgres", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_Postgres_AppliesEveryScriptOnceAndExits0()
    {
        var database = TestPostgres.CreateDatabase(fromTemplate: false);
        try
        {
            var run = await ConsoleCapture.RunAsync(() => MigrateCommand.TryRunAsync(["migrate", "--Storage:Provider=Postgres", $"--ConnectionStrings:Postgres={database}"]));

            Assert.Equal(0, run.Result);
            await using var connection = new NpgsqlConnection(database);
            await connection.OpenAsync(TestContext.Current.CancellationToken);
            await using var command = new NpgsqlCommand("SELECT count(*) FROM schema_migrations", connection);
            Assert.Equal((long)Storage.Migrations.MigrationScripts.For("Postgres").Count, await command.ExecuteScalarAsync(TestContext.Current.CancellationToken));
        }
        finally
        {
            await TestPostgres.DropDatabaseAsync(database);
        }
    }

    [Fact]
    public async Task OtherArguments_AreNotTheMigrateCommand()
    {
        Assert.Null(await MigrateCommand.TryRunAsync(["--urls", "http://127.0.0.1:0"]));
        Assert.Null(await MigrateCommand.TryRunAsync([]));
    }
}

using Npgsql;
using Parley.Server.App;
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

            var first = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", connection]));
            var second = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", connection]));

            Assert.Equal(0, first.Result);
            Assert.Equal(0, second.Result);
            // It says what it did: the scripts the first run applied, and that the second had nothing to do.
            var scripts = string.Join(", ", Storage.Migrations.MigrationScripts.For("Sqlite").Select(m => m.FullName));
            Assert.Contains($"Sqlite: applied {scripts}; schema is current.", first.Output, StringComparison.Ordinal);
            Assert.Contains("Sqlite: schema is current: no migrations to apply.", second.Output, StringComparison.Ordinal);
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
    public async Task Migrate_ADatabaseANewerParleyMigrated_Exits1SayingSo_AndTheServerRefusesToStart()
    {
        var directory = Directory.CreateTempSubdirectory("parley-migrate-");
        try
        {
            var file = Path.Combine(directory.FullName, "parley.db");
            var connection = $"--ConnectionStrings:Sqlite=Data Source={file}";
            Assert.Equal(0, (await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", connection]))).Result);
            await using (var sqlite = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Pooling=False"))
            {
                await sqlite.OpenAsync(TestContext.Current.CancellationToken);
                await using var command = sqlite.CreateCommand();
                command.CommandText = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from_the_future', '2027-01-01T00:00:00.000Z')";
                await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", connection]));
            var newest = Storage.Migrations.MigrationScripts.For("Sqlite").Max(m => m.Version);

            Assert.Equal(1, run.Result);
            Assert.Contains(
                $"Parley cannot migrate (Sqlite): The database's schema is at migration 99, newer than this version of Parley knows (up to {newest})",
                run.Error, StringComparison.Ordinal);
            var serve = await ServerCommand.RunAsync(directory.FullName, "Production", ["--Auth:Mode=Header", "--urls", "http://127.0.0.1:0", connection]);
            Assert.Equal(1, serve.ExitCode);
            Assert.Contains("Parley cannot start: The database's schema is at migration 99", serve.Error, StringComparison.Ordinal);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Migrate_AScriptThatFails_Exits1NamingIt_AndLeavesNothingOfIt()
    {
        var directory = Directory.CreateTempSubdirectory("parley-migrate-");
        try
        {
            var file = Path.Combine(directory.FullName, "parley.db");
            await using (var sqlite = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Pooling=False"))
            {
                // A table of the first script's name already there (another application's, say): its CREATE TABLE fails.
                await sqlite.OpenAsync(TestContext.Current.CancellationToken);
                await using var command = sqlite.CreateCommand();
                command.CommandText = "CREATE TABLE conversations (x INTEGER)";
                await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", $"--ConnectionStrings:Sqlite=Data Source={file}"]));

            Assert.Equal(1, run.Result);
            Assert.Contains("Parley cannot migrate (Sqlite): Migration 0001_initial failed and was rolled back (", run.Error, StringComparison.Ordinal);
            Assert.Contains("already exists", run.Error, StringComparison.Ordinal);
            await using (var sqlite = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Pooling=False"))
            {
                await sqlite.OpenAsync(TestContext.Current.CancellationToken);
                await using var count = sqlite.CreateCommand();
                count.CommandText = "SELECT COUNT(*) FROM schema_migrations";
                Assert.Equal(0L, await count.ExecuteScalarAsync(TestContext.Current.CancellationToken));
            }
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
        var port = TestServerSettings.FreePort();

        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(
            ["migrate", "--Storage:Provider=Postgres", $"--ConnectionStrings:Postgres=Host=127.0.0.1;Port={port};Username=postgres;Timeout=3"]));

        Assert.Equal(1, run.Result);
        Assert.Contains("Parley cannot migrate (Postgres)", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_PostgresWithoutConnectionString_Exits1NamingTheSetting()
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", "--Storage:Provider=Postgres", "--ConnectionStrings:Postgres="]));

        Assert.Equal(1, run.Result);
        Assert.Contains("ConnectionStrings:Postgres", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_Postgres_AppliesEveryScriptOnceAndExits0()
    {
        var database = TestPostgres.CreateDatabase(fromTemplate: false);
        try
        {
            var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", "--Storage:Provider=Postgres", $"--ConnectionStrings:Postgres={database}"]));

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
    public async Task Migrate_WhileAServerHoldsTheSqliteFile_Exits1NamingTheFile()
    {
        // Two processes could migrate and write the same SQLite file; the server holds parley.db.lock, so migrate is refused.
        var directory = Directory.CreateTempSubdirectory("parley-migrate-");
        try
        {
            var database = Path.Combine(directory.FullName, "parley.db");
            using (new Storage.Sqlite.SqliteChatStore($"Data Source={database}", exclusive: true))
            {
                var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", $"--ConnectionStrings:Sqlite=Data Source={database}"]));

                Assert.Equal(1, run.Result);
                Assert.Contains($"Parley cannot migrate (Sqlite): The SQLite database {database} is in use by another Parley process (it holds {database}.lock).", run.Error, StringComparison.Ordinal);
            }

            var released = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", $"--ConnectionStrings:Sqlite=Data Source={database}"]));
            Assert.Equal(0, released.Result);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Migrate_BadSettingValue_Exits1NamingTheKeyAndTheAllowedValues()
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", "--Storage:Provider=Mongo"]));

        Assert.Equal(1, run.Result);
        Assert.Contains("Parley cannot migrate: invalid configuration.", run.Error, StringComparison.Ordinal);
        Assert.Contains("  - Storage:Provider is 'Mongo'; allowed values: Sqlite, Postgres.", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MigrateHelp_PrintsUsageAndMigratesNothing()
    {
        // "migrate --help" used to migrate (and create parley.db) like "migrate".
        var directory = Directory.CreateTempSubdirectory("parley-migrate-");
        try
        {
            var database = Path.Combine(directory.FullName, "parley.db");

            var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["migrate", "--help", $"--ConnectionStrings:Sqlite=Data Source={database}"]));

            Assert.Equal(0, run.Result);
            Assert.Contains("usage: migrate", run.Output, StringComparison.Ordinal);
            Assert.Empty(directory.EnumerateFileSystemInfos());
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}

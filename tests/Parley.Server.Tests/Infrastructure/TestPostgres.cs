using Npgsql;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The PostgreSQL server the test command starts (PARLEY_TEST_POSTGRES, an admin connection string) and the
/// store the API suite runs against (PARLEY_TEST_STORE = sqlite | postgres). Each test server gets its own
/// database, cloned from the migrated template the test command prepares (fast: no migrations per class).
/// </summary>
internal static class TestPostgres
{
    public const string TemplateDatabase = "parley_template";

    public static string? AdminConnectionString => Environment.GetEnvironmentVariable("PARLEY_TEST_POSTGRES");

    /// <summary>The API suite's store for this run is PostgreSQL.</summary>
    public static bool Selected => string.Equals(Environment.GetEnvironmentVariable("PARLEY_TEST_STORE"), "postgres", StringComparison.OrdinalIgnoreCase);

    /// <summary>For PostgreSQL-only tests: skips (with the reason) when the test command did not provide a server.</summary>
    public static string RequireAdmin()
    {
        Assert.SkipWhen(AdminConnectionString is null, "PostgreSQL is not configured: run ./test.sh, which starts one (PARLEY_TEST_POSTGRES).");
        return AdminConnectionString!;
    }

    /// <summary>Creates a database (a clone of the migrated template, or empty) and returns its connection string.</summary>
    public static string CreateDatabase(bool fromTemplate, string? adminConnectionString = null)
    {
        var admin = adminConnectionString ?? RequireAdmin();
        var name = "parley_t_" + Guid.NewGuid().ToString("N")[..20];
        using (var connection = new NpgsqlConnection(admin))
        {
            connection.Open();
            if (fromTemplate)
            {
                using var check = new NpgsqlCommand($"SELECT 1 FROM pg_database WHERE datname = '{TemplateDatabase}'", connection);
                if (check.ExecuteScalar() is null)
                {
                    throw new InvalidOperationException(
                        $"The template database {TemplateDatabase} does not exist: ./test.sh creates it with the server's migrate command.");
                }
            }

            using var create = new NpgsqlCommand(fromTemplate ? $"CREATE DATABASE {name} TEMPLATE {TemplateDatabase}" : $"CREATE DATABASE {name}", connection);
            create.ExecuteNonQuery();
        }

        return new NpgsqlConnectionStringBuilder(admin) { Database = name, MaxPoolSize = 20 }.ConnectionString;
    }

    public static async Task DropDatabaseAsync(string connectionString, string? adminConnectionString = null)
    {
        var database = new NpgsqlConnectionStringBuilder(connectionString).Database;
        var admin = adminConnectionString ?? AdminConnectionString;
        if (admin is null || database is null)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(admin);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {database} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }
}

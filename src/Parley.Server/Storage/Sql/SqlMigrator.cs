using System.Data.Common;
using Parley.Server.Storage.Migrations;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// Applies the dialect's migration scripts (<see cref="MigrationScripts"/>) that the ledger, <c>schema_migrations</c>,
/// does not list yet: in version order, each in its own transaction together with its ledger row, so a failed script
/// leaves neither its changes nor its record. The caller excludes concurrent migrators (PostgreSQL: an advisory lock;
/// SQLite: the store's single writer).
/// </summary>
internal static class SqlMigrator
{
    // Migrations may run longer than a request; they get a generous timeout of their own.
    private const int ScriptTimeoutSeconds = 300;

    /// <summary>Returns the names of the scripts applied (<c>NNNN_name</c>), none when the schema was current.</summary>
    public static async Task<IReadOnlyList<string>> ApplyAsync(DbConnection connection, SqlDialect dialect, CancellationToken cancellationToken)
    {
        var ledger = new SqlSession(connection, null, dialect);
        await ledger.Sql(dialect.CreateMigrationLedgerSql).ExecuteAsync(cancellationToken);
        var applied = (await ledger.Sql("SELECT version FROM schema_migrations").ListAsync(r => r.Long(0), cancellationToken)).ToHashSet();
        var scripts = MigrationScripts.For(dialect.Provider);
        var newest = scripts.Max(m => m.Version);
        if (applied.Where(v => v > newest).DefaultIfEmpty().Max() is var ahead and > 0)
        {
            // A newer Parley migrated this database: this one would write columns and tables as they were before.
            throw new SchemaTooNewException(
                $"The database's schema is at migration {ahead}, newer than this version of Parley knows (up to {newest}): a newer " +
                "Parley migrated it. Run that version or a later one, or restore a backup taken before the upgrade.");
        }

        var names = new List<string>();
        foreach (var script in scripts.Where(m => !applied.Contains(m.Version)))
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var s = new SqlSession(connection, transaction, dialect);
            try
            {
                await s.Sql(script.Sql).WithTimeout(ScriptTimeoutSeconds).ExecuteAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Named, and not taken for an unreachable database (a script that ran out of time would otherwise be
                // run again and again, each time holding its locks for as long).
                throw new MigrationFailedException(
                    $"Migration {script.FullName} failed and was rolled back ({ex.Message}). Nothing of it was applied; " +
                    "fix the cause and start again.", ex);
            }

            await s.Sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@v, @n, @t)")
                .With("@v", script.Version).With("@n", script.Name).With("@t", DateTimeOffset.UtcNow)
                .ExecuteAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            names.Add(script.FullName);
        }

        return names;
    }
}

/// <summary>The database was migrated by a newer version of Parley than this one.</summary>
internal sealed class SchemaTooNewException(string message) : Exception(message);

/// <summary>A migration script failed (its transaction rolled back): start-up and the <c>migrate</c> command name it and exit with 1.</summary>
internal sealed class MigrationFailedException(string message, Exception inner) : Exception(message, inner);

using Microsoft.Data.Sqlite;
using Parley.Server.Storage.Sql;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Tests;

/// <summary>
/// The commands of SQLite's statement caches, which bind by position through SQLite's own API: they must behave as
/// Microsoft.Data.Sqlite's commands do wherever the store relies on it (the store's contract tests run through them too).
/// </summary>
[Trait("Store", "Independent")]
public sealed class SqliteStatementCommandTests : IDisposable
{
    private static readonly SqliteDialect Dialect = new();
    private readonly SqliteConnection _connection;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    public SqliteStatementCommandTests()
    {
        _connection = new SqliteConnection("Data Source=:memory:");
        _connection.Open();
        using var create = _connection.CreateCommand();
        create.CommandText = "CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, n INTEGER, s TEXT);";
        create.ExecuteNonQuery();
    }

    public void Dispose() => _connection.Dispose();

    private SqliteStatementCommand Command(string text) => new(_connection, text);

    private async Task InsertAsync(Guid id, long? n, string? s)
    {
        using var insert = Command("INSERT INTO t (id, n, s) VALUES (@id, @n, @s)");
        Dialect.BindGuid(insert, "@id", id);
        Dialect.BindLong(insert, "@n", n);
        Dialect.BindText(insert, "@s", s);
        Assert.Equal(1, await insert.ExecuteNonQueryAsync(Token));
    }

    [Fact]
    public async Task Values_RoundTrip_IdsAsCanonicalText_LongAndUnicodeText_AndNulls()
    {
        var id = Guid.CreateVersion7();
        var longText = string.Concat(Enumerable.Repeat("héllo wörld, ", 200)) + "🙂";
        await InsertAsync(id, long.MaxValue, longText);
        await InsertAsync(Guid.CreateVersion7(), null, null);

        using var check = _connection.CreateCommand();
        check.CommandText = "SELECT id FROM t WHERE n IS NOT NULL";
        Assert.Equal(id.ToString("D"), check.ExecuteScalar()); // stored as Microsoft.Data.Sqlite stored it

        using var select = Command("SELECT id, n, s FROM t ORDER BY n IS NULL");
        await using var reader = await select.ExecuteReaderAsync(Token);
        Assert.True(await reader.ReadAsync(Token));
        var row = new SqlRow(reader, Dialect);
        Assert.Equal(id, row.Guid(0));
        Assert.Equal(long.MaxValue, row.Long(1));
        Assert.Equal(longText, row.String(2));
        Assert.True(await reader.ReadAsync(Token));
        Assert.Null(row.NullableLong(1));
        Assert.Null(row.NullableString(2));
        Assert.False(await reader.ReadAsync(Token));
    }

    [Fact]
    public async Task AValueNotBoundAgain_Throws_InsteadOfReusingTheLastOne()
    {
        var statements = new StatementCache(_connection, text => new SqliteStatementCommand(_connection, text));
        const string Text = "INSERT INTO t (id, n) VALUES (@id, @n)";
        var first = statements.Get(Text)!;
        Dialect.BindGuid(first, "@id", Guid.CreateVersion7());
        Dialect.BindLong(first, "@n", 1);
        await first.ExecuteNonQueryAsync(Token);

        var again = statements.Get(Text)!;
        Assert.Same(first, again);
        Dialect.BindGuid(again, "@id", Guid.CreateVersion7()); // @n not bound this time

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => again.ExecuteNonQueryAsync(Token));
        Assert.Contains("@n", error.Message);
        statements.Clear();
    }

    [Fact]
    public async Task ANameTheStatementDoesNotUse_IsIgnored()
    {
        using var select = Command("SELECT COUNT(*) FROM t WHERE n = @n");
        Dialect.BindLong(select, "@n", 1);
        Dialect.BindText(select, "@unused", "x");
        Assert.Equal(0L, await select.ExecuteScalarAsync(Token));
    }

    [Fact]
    public async Task SeveralStatements_ResultsAreTheStatementsWithColumns_TheOthersRunInBetween()
    {
        var id = Guid.CreateVersion7();
        using var command = Command("""
            INSERT INTO t (id, n) VALUES (@id, 1);
            SELECT n FROM t WHERE id = @id;
            UPDATE t SET n = n + 1 WHERE id = @id;
            SELECT n FROM t WHERE id = @id;
            SELECT n FROM t WHERE id = 'none';
            """);
        Dialect.BindGuid(command, "@id", id);

        await using var reader = await command.ExecuteReaderAsync(Token);
        var results = new SqlResults(reader, Dialect, Token);
        Assert.Equal([1L], await results.NextAsync(r => r.Long(0)));
        Assert.Equal([2L], await results.NextAsync(r => r.Long(0)));
        Assert.Empty(await results.NextAsync(r => r.Long(0)));
        Assert.False(await reader.NextResultAsync(Token));
        Assert.Equal(2, reader.RecordsAffected);
    }

    [Fact]
    public async Task AReaderDisposedEarly_StillRunsTheStatementsItDidNotReach()
    {
        var id = Guid.CreateVersion7();
        using (var command = Command("SELECT 1; INSERT INTO t (id, n) VALUES (@id, 5);"))
        {
            Dialect.BindGuid(command, "@id", id);
            await using var reader = await command.ExecuteReaderAsync(Token);
            Assert.True(await reader.ReadAsync(Token));
        }

        using var count = Command("SELECT n FROM t WHERE id = @id");
        Dialect.BindGuid(count, "@id", id);
        Assert.Equal(5L, await count.ExecuteScalarAsync(Token));
    }

    [Fact]
    public async Task ExecuteNonQuery_CountsChangedRows_AndReturningRowsAreNotLost()
    {
        await InsertAsync(Guid.CreateVersion7(), 1, null);
        await InsertAsync(Guid.CreateVersion7(), 1, null);
        using var update = Command("UPDATE t SET n = @to WHERE n = @from RETURNING id");
        Dialect.BindLong(update, "@from", 1);
        Dialect.BindLong(update, "@to", 2);
        Assert.Equal(2, await update.ExecuteNonQueryAsync(Token));

        using var count = Command("SELECT COUNT(*) FROM t WHERE n = 2");
        Assert.Equal(2L, await count.ExecuteScalarAsync(Token));
    }

    [Fact]
    public async Task AConstraintViolation_IsASqliteException_AndTheStatementRunsAgainAfterwards()
    {
        var id = Guid.CreateVersion7();
        await InsertAsync(id, 1, null);

        using var insert = Command("INSERT INTO t (id, n) VALUES (@id, @n)");
        Dialect.BindGuid(insert, "@id", id);
        Dialect.BindLong(insert, "@n", 2);
        var error = await Assert.ThrowsAsync<SqliteException>(() => insert.ExecuteNonQueryAsync(Token));
        Assert.Equal(19, error.SqliteErrorCode); // SQLITE_CONSTRAINT

        insert.ResetBindings();
        Dialect.BindGuid(insert, "@id", Guid.CreateVersion7());
        Dialect.BindLong(insert, "@n", 2);
        Assert.Equal(1, await insert.ExecuteNonQueryAsync(Token));
    }

    [Fact]
    public async Task AFailedStatement_IsNotRunAgain_AndTheStatementsAfterItDoNotRun()
    {
        // A function that fails on its first call only: running the failed statement again would succeed.
        var calls = 0;
        _connection.CreateFunction("flaky", () => ++calls == 1 ? throw new InvalidOperationException("first call") : 1L);
        var first = Guid.CreateVersion7();
        var second = Guid.CreateVersion7();

        using var command = Command("""
            INSERT INTO t (id, n) VALUES (@first, flaky());
            INSERT INTO t (id, n) VALUES (@second, 2);
            """);
        Dialect.BindGuid(command, "@first", first);
        Dialect.BindGuid(command, "@second", second);
        await Assert.ThrowsAsync<SqliteException>(() => command.ExecuteNonQueryAsync(Token));

        Assert.Equal(1, calls);
        using var count = Command("SELECT COUNT(*) FROM t");
        Assert.Equal(0L, await count.ExecuteScalarAsync(Token));

        // The command runs again once its values are bound again.
        command.ResetBindings();
        Dialect.BindGuid(command, "@first", first);
        Dialect.BindGuid(command, "@second", second);
        Assert.Equal(2, await command.ExecuteNonQueryAsync(Token));
    }

    [Fact]
    public async Task InvalidSql_IsASqliteException()
    {
        using var command = Command("SELECT FROM nowhere");
        var error = await Assert.ThrowsAsync<SqliteException>(() => command.ExecuteNonQueryAsync(Token));
        Assert.Equal(1, error.SqliteErrorCode); // SQLITE_ERROR
    }

    [Fact]
    public async Task ACommitAfterAReadThatStoppedEarly_Succeeds()
    {
        await InsertAsync(Guid.CreateVersion7(), 1, null);
        await InsertAsync(Guid.CreateVersion7(), 2, null);
        await using var transaction = await _connection.BeginTransactionAsync(Token);
        using (var select = Command("SELECT n FROM t ORDER BY n"))
        {
            await using var reader = await select.ExecuteReaderAsync(Token);
            Assert.True(await reader.ReadAsync(Token)); // the second row is never read
        }

        using var insert = Command("INSERT INTO t (id, n) VALUES (@id, 3)");
        Dialect.BindGuid(insert, "@id", Guid.CreateVersion7());
        await insert.ExecuteNonQueryAsync(Token);
        await transaction.CommitAsync(Token);

        using var count = Command("SELECT COUNT(*) FROM t");
        Assert.Equal(3L, await count.ExecuteScalarAsync(Token));
    }
}

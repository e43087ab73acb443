using System.Data;
using Microsoft.Data.Sqlite;
using Parley.Server.Storage.Sql;

namespace Parley.Server.Tests;

/// <summary>
/// The write transaction's connection: SQLite's single writer keeps its connection and prepared statements from one
/// transaction to the next, but only after a transaction that ended cleanly.
/// </summary>
[Trait("Store", "Independent")]
public sealed class WriteConnectionTests
{
    private static SqliteConnection OpenMemory()
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        return connection;
    }

    [Fact]
    public async Task Kept_AfterACleanTransaction_StaysOpenWithItsStatements()
    {
        var connection = OpenMemory();
        var statements = new StatementCache(connection);
        var writer = new WriteConnection(connection, statements, keep: () => true);
        writer.Begin();
        var prepared = statements.Get("SELECT 1");

        writer.Completed();
        await writer.DisposeAsync();

        Assert.False(writer.IsClosed);
        Assert.Equal(ConnectionState.Open, connection.State);
        writer.Begin();
        Assert.Same(prepared, statements.Get("SELECT 1"));
        await writer.CloseAsync();
    }

    [Fact]
    public async Task Kept_AfterATransactionThatDidNotEndCleanly_IsClosed()
    {
        var connection = OpenMemory();
        var writer = new WriteConnection(connection, new StatementCache(connection), keep: () => true);
        writer.Begin();

        await writer.DisposeAsync(); // an exception left the transaction: Completed was never called

        Assert.True(writer.IsClosed);
        Assert.Equal(ConnectionState.Closed, connection.State);
    }

    [Fact]
    public async Task Kept_ACompletedTransaction_DoesNotCountForTheNext()
    {
        var connection = OpenMemory();
        var writer = new WriteConnection(connection, new StatementCache(connection), keep: () => true);
        writer.Begin();
        writer.Completed();
        await writer.DisposeAsync();

        writer.Begin();
        await writer.DisposeAsync();

        Assert.True(writer.IsClosed);
    }

    [Fact]
    public async Task Kept_OnceItsOwnerStopped_IsClosedAfterTheTransaction()
    {
        var connection = OpenMemory();
        var stopped = false;
        var writer = new WriteConnection(connection, new StatementCache(connection), keep: () => !stopped);
        writer.Begin();
        stopped = true;
        writer.Completed();

        await writer.DisposeAsync();

        Assert.True(writer.IsClosed);
        Assert.Equal(ConnectionState.Closed, connection.State);
    }

    [Fact]
    public async Task Pooled_IsClosedAfterEveryTransaction()
    {
        var connection = OpenMemory();
        var writer = new WriteConnection(connection, null);
        writer.Completed();

        await writer.DisposeAsync();

        Assert.Equal(ConnectionState.Closed, connection.State);
    }

    [Fact]
    public async Task Begin_WithTheCacheFull_StartsItAgain()
    {
        var connection = OpenMemory();
        var statements = new StatementCache(connection);
        for (var i = 0; i < StatementCache.Capacity; i++)
        {
            Assert.NotNull(statements.Get($"SELECT {i}"));
        }

        Assert.Null(statements.Get("SELECT 'one more'"));
        var writer = new WriteConnection(connection, statements, keep: () => true);

        writer.Begin();

        Assert.False(statements.IsFull);
        Assert.NotNull(statements.Get("SELECT 'one more'"));
        await writer.CloseAsync();
    }
}

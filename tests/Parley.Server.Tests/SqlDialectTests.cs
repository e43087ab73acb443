using Parley.Server.Storage.Postgres;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Tests;

/// <summary>How each store splits batches of rows into statements (the batches themselves: ChatStoreContractTests).</summary>
[Trait("Store", "Independent")]
public sealed class SqlDialectTests
{
    [Theory]
    [InlineData(200, 5, 20)] // delivered reports: five parameters each to move
    [InlineData(150, 5, 20)] // receipt log rows
    [InlineData(500, 1, 100)] // IN lists
    [InlineData(10, 1, 10)] // never more rows than the caller's own limit
    [InlineData(200, 250, 1)] // a row above the budget still gets a statement of its own
    public void Sqlite_KeepsAStatementWithinItsParameterBudget(int rows, int parametersPerRow, int expected) =>
        Assert.Equal(expected, new SqliteDialect().RowsPerStatement(rows, parametersPerRow));

    [Theory]
    [InlineData(200, 5)]
    [InlineData(150, 5)]
    [InlineData(500, 1)]
    public void Postgres_KeepsTheCallersLimit_EachStatementIsARoundTrip(int rows, int parametersPerRow) =>
        Assert.Equal(rows, new PostgresDialect().RowsPerStatement(rows, parametersPerRow));
}

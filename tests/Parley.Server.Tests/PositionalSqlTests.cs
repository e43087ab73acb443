using Parley.Server.Storage.Sql;

namespace Parley.Server.Tests;

[Trait("Store", "Independent")]
public sealed class PositionalSqlTests
{
    [Fact]
    public void Parse_NumbersEachStatementsParametersInOrderOfFirstUse()
    {
        var statements = PositionalSql.Parse("UPDATE t SET a = @a, b = @b WHERE id = @id AND a < @a;\nSELECT x FROM t WHERE id = @id")!;

        Assert.Equal(2, statements.Length);
        Assert.Equal("UPDATE t SET a = $1, b = $2 WHERE id = $3 AND a < $1", statements[0].Sql);
        Assert.Equal(["@a", "@b", "@id"], statements[0].Parameters);
        Assert.Equal("SELECT x FROM t WHERE id = $1", statements[1].Sql);
        Assert.Equal(["@id"], statements[1].Parameters);
    }

    [Fact]
    public void Parse_SemicolonsAndAtSignsInCommentsAndStrings_AreText()
    {
        var statements = PositionalSql.Parse(
            """
            -- Everyone else; the sender @s has read it.
            UPDATE t SET note = 'a; @b ''quoted''' /* @c; */ WHERE "we;ird@" = @v AND j @> '{}';
            -- nothing after this
            """)!;

        var statement = Assert.Single(statements);
        Assert.Equal(["@v"], statement.Parameters);
        Assert.Contains("'a; @b ''quoted'''", statement.Sql, StringComparison.Ordinal);
        Assert.Contains("/* @c; */", statement.Sql, StringComparison.Ordinal);
        Assert.Contains("\"we;ird@\" = $1 AND j @> '{}'", statement.Sql, StringComparison.Ordinal);
        Assert.StartsWith("-- Everyone else; the sender @s has read it.", statement.Sql, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("DO $$ BEGIN PERFORM 1; END $$")]
    [InlineData("SELECT $1")]
    [InlineData("SELECT 'unterminated")]
    [InlineData("SELECT 1 /* unterminated")]
    public void Parse_WhatItCannotSplitSafely_IsLeftToTheProvider(string text)
    {
        Assert.Null(PositionalSql.Parse(text));
    }

    [Fact]
    public void Split_TheSameTextTwice_GivesTheSameStatements()
    {
        var text = "SELECT a FROM t WHERE b = @b";

        Assert.Same(PositionalSql.Split(text), PositionalSql.Split(text));
    }
}

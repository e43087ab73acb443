using Microsoft.Data.Sqlite;
using Parley.Server.Storage.Sqlite;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// One SQLite file belongs to one process (docs/configuration.md). Two server processes could open the same
/// parley.db and both write to it; the server now holds parley.db.lock and a second process is refused.
/// </summary>
public sealed class SqliteFileLockTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("parley-lock-");

    private string Database => Path.Combine(_directory.FullName, "parley.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public void ExclusiveStore_WhileAnotherHoldsTheFile_IsRefusedNamingTheFile_AndGetsItOnceReleased()
    {
        var first = new SqliteChatStore($"Data Source={Database}", exclusive: true);

        var refused = Assert.Throws<DatabaseInUseException>(() => new SqliteChatStore($"Data Source={Database}", exclusive: true));
        Assert.Contains($"The SQLite database {Database} is in use by another Parley process (it holds {Database}.lock).", refused.Message, StringComparison.Ordinal);

        first.Dispose();
        using var second = new SqliteChatStore($"Data Source={Database}", exclusive: true);
    }

    [Fact]
    public void ExclusiveStore_ALockFileThatCannotBeOpened_SaysWhy_NotThatAnotherProcessHoldsIt()
    {
        // Something other than another process in the way (here a symbolic link loop where the lock file goes; a read-only
        // file system or a full disk likewise): the operator is told what it is, not to stop a process that does not exist.
        Assert.SkipUnless(OperatingSystem.IsLinux(), "Creating the symbolic link needs no privileges on Linux.");
        File.CreateSymbolicLink(Database + ".lock", Database + ".lock");

        var failed = Assert.ThrowsAny<IOException>(() => new SqliteChatStore($"Data Source={Database}", exclusive: true));

        Assert.IsNotType<DatabaseInUseException>(failed);
        Assert.Contains($"{Database}.lock", failed.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Data Source=:memory:")]
    [InlineData("Data Source=shared;Mode=Memory;Cache=Shared")]
    [InlineData("Data Source=file::memory:?cache=shared")]
    public void InMemoryDatabase_HasNoLockFile(string connectionString) =>
        Assert.Null(SqliteFileLock.PathOf(connectionString));

    [Fact]
    public void PathOf_RelativeFile_IsResolvedAgainstTheWorkingDirectory() =>
        Assert.Equal(Path.Combine(Environment.CurrentDirectory, "parley.db"), SqliteFileLock.PathOf("Data Source=parley.db"));

    [Fact]
    public void ExclusiveStore_ThroughASymbolicLinkOrAUriToTheHeldFile_IsRefused()
    {
        using var first = new SqliteChatStore($"Data Source={Database}", exclusive: true);
        var elsewhere = Directory.CreateDirectory(Path.Combine(_directory.FullName, "other dir"));
        var link = Path.Combine(elsewhere.FullName, "p.db");
        File.CreateSymbolicLink(link, Database);

        Assert.Equal(Database, SqliteFileLock.PathOf($"Data Source={link}"));
        Assert.Throws<DatabaseInUseException>(() => new SqliteChatStore($"Data Source={link}", exclusive: true));
        Assert.Equal(
            Path.Combine(elsewhere.FullName, "not yet.db"),
            SqliteFileLock.PathOf($"Data Source=file://{elsewhere.FullName.Replace(" ", "%20", StringComparison.Ordinal)}/not%20yet.db?cache=private"));
        Assert.Equal(Database, SqliteFileLock.PathOf($"Data Source=file:{link.Replace(" ", "%20", StringComparison.Ordinal)}?mode=rwc"));
        Assert.Equal(Database, SqliteFileLock.PathOf($"Data Source=file://localhost{link.Replace(" ", "%20", StringComparison.Ordinal)}"));
    }

    [Fact]
    public async Task SecondServerProcess_OnAFileAnotherProcessHolds_Exits1NamingTheFile()
    {
        // This test process plays the first server: it holds the lock as a running server does.
        using var first = new SqliteChatStore($"Data Source={Database}", exclusive: true);

        var run = await ServerCommand.RunAsync(
            _directory.FullName, "Development", ["--urls", "http://127.0.0.1:0", $"--ConnectionStrings:Sqlite=Data Source={Database}"], TimeSpan.FromSeconds(60));

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"Parley cannot start: The SQLite database {Database} is in use by another Parley process (it holds {Database}.lock).", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Now listening", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerProcess_HoldsTheFile_UntilItEnds()
    {
        await using (var server = ServerCommand.Start(_directory.FullName, "Development", ["--urls", "http://127.0.0.1:0"]))
        {
            await server.WaitForOutputAsync("Now listening", TimeSpan.FromSeconds(60));

            Assert.Throws<DatabaseInUseException>(() => new SqliteChatStore($"Data Source={Database}", exclusive: true));
        }

        // Killed, not stopped: the operating system released the lock with the process; the file stays (see SqliteFileLock).
        using var after = new SqliteChatStore($"Data Source={Database}", exclusive: true);
        Assert.True(File.Exists(Database + ".lock"));
    }
}

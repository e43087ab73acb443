using System.Text.RegularExpressions;
using Parley.Server.App;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The server's command line: help, version, per-command help and unknown commands. Before it, <c>--help</c>,
/// <c>-h</c>, <c>help</c> and <c>--version</c> started the server and created parley.db, <c>migrate --help</c>
/// migrated, and any word was taken for a setting.
/// </summary>
public sealed partial class CommandLineTests
{
    private static readonly TimeSpan ProcessBound = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    [InlineData("serve", "--help")]
    [InlineData("--urls", "http://127.0.0.1:0", "--help")]
    public async Task Help_AnyForm_ListsTheCommandsAndTheMainSettings(params string[] args)
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));

        Assert.Equal(0, run.Result);
        Assert.Contains("Commands:", run.Output, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\s+serve\s+run the server \(the default", run.Output);
        Assert.Matches(@"(?m)^\s+token\s+", run.Output);
        Assert.Matches(@"(?m)^\s+migrate\s+", run.Output);
        Assert.Contains("--version", run.Output, StringComparison.Ordinal);
        foreach (var setting in new[] { "--urls", "--Storage:Provider", "ConnectionStrings__Postgres", "--Auth:Mode", "Auth__Jwt__SigningKey" })
        {
            Assert.Contains(setting, run.Output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("usage: token <user-id>", "token", "--help")]
    [InlineData("usage: token <user-id>", "token", "alice", "-h")]
    [InlineData("usage: token <user-id>", "help", "token")]
    [InlineData("usage: migrate", "migrate", "--help")]
    [InlineData("usage: migrate", "help", "migrate")]
    [InlineData("usage: new-epoch", "new-epoch", "--help")]
    [InlineData("usage: new-epoch", "help", "new-epoch")]
    public async Task CommandHelp_PrintsTheCommandsUsageAndDoesNotAct(string usage, params string[] args)
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));

        Assert.Equal(0, run.Result);
        Assert.StartsWith(usage, run.Output, StringComparison.Ordinal);
        Assert.DoesNotMatch(JwtLine(), run.Output);
        Assert.DoesNotMatch(@"(?m)^(Sqlite|Postgres): ", run.Output);
        Assert.DoesNotContain("Commands:", run.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--version")]
    [InlineData("migrate", "--version")]
    public async Task Version_PrintsTheVersionAndExits0(params string[] args)
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));

        Assert.Equal(0, run.Result);
        Assert.Matches(@"(?m)^Parley \d+\.\d+\.\d+", run.Output);
    }

    [Theory]
    [InlineData("serve2")]
    [InlineData("alice")]
    [InlineData("help", "deploy")]
    public async Task UnknownCommand_Exits1NamingItAndTheCommands(params string[] args)
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));

        Assert.Equal(1, run.Result);
        Assert.Contains($"Parley: unknown command '{args[^1]}'. Commands: serve (the default), token, migrate, new-epoch, help.", run.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData]
    [InlineData("serve")]
    [InlineData("--urls", "http://127.0.0.1:0")]
    [InlineData("serve", "--Limits:SendBurst=50")]
    [InlineData("Limits:SendBurst=50")]
    [InlineData("/Limits:SendBurst", "50")]
    public async Task ServeOrSettingsOnly_AreLeftToTheServer(params string[] args)
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));

        Assert.Null(run.Result);
        Assert.DoesNotContain("Parley", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void ServerOptions_Serve_IsNotPassedOnAsASetting()
    {
        Assert.Equal(["--urls", "http://127.0.0.1:0"], ParleyCommandLine.ServerOptions(["serve", "--urls", "http://127.0.0.1:0"]).Args!);
        Assert.Equal(["--urls", "http://127.0.0.1:0"], ParleyCommandLine.ServerOptions(["--urls", "http://127.0.0.1:0"]).Args!);
    }

    /// <summary>The reproduction as an operator saw it: the real process, in an empty directory.</summary>
    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    [InlineData("--version")]
    [InlineData("migrate", "--help")]
    [InlineData("new-epoch", "--help")]
    [InlineData("token", "--help")]
    public async Task HelpOrVersion_RealProcess_Exits0AndCreatesNoFile(params string[] args)
    {
        var directory = Directory.CreateTempSubdirectory("parley-cli-");
        try
        {
            var run = await ServerCommand.RunAsync(directory.FullName, "Development", args, ProcessBound);

            Assert.Equal(0, run.ExitCode);
            Assert.Equal(string.Empty, run.Error);
            Assert.DoesNotContain("Now listening", run.Output, StringComparison.Ordinal);
            Assert.Empty(directory.EnumerateFileSystemInfos());
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task UnknownCommand_RealProcess_Exits1AndCreatesNoFile()
    {
        var directory = Directory.CreateTempSubdirectory("parley-cli-");
        try
        {
            var run = await ServerCommand.RunAsync(directory.FullName, "Development", ["start"], ProcessBound);

            Assert.Equal(1, run.ExitCode);
            Assert.StartsWith("Parley: unknown command 'start'.", run.Error, StringComparison.Ordinal);
            Assert.Empty(directory.EnumerateFileSystemInfos());
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", RegexOptions.Multiline)]
    private static partial Regex JwtLine();
}

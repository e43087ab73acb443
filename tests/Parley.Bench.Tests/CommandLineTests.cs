using Parley.Bench.Options;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class CommandLineTests
{
    private static BenchOptions Parse(params string[] args)
    {
        var result = CommandLine.Parse(args, _ => null);
        Assert.True(result.Options is not null, result.Error);
        return result.Options;
    }

    private static string Error(params string[] args)
    {
        var result = CommandLine.Parse(args, _ => null);
        Assert.Null(result.Options);
        return result.Error!;
    }

    [Fact]
    public void Parse_Chat_HasTheDocumentedDefaults()
    {
        var o = Parse("chat");

        Assert.Equal(ScenarioKind.Chat, o.Scenario);
        Assert.Equal([new Uri("http://localhost:8083/")], o.Urls);
        Assert.Equal(1000, o.Users);
        Assert.Equal(1000, o.Rate);
        Assert.Equal(30, o.DurationSeconds);
        Assert.Equal(5, o.WarmupSeconds);
        Assert.Equal(5, o.GraceSeconds);
        Assert.Equal(AuthKind.Header, o.Auth);
        Assert.Equal(Transport.WebSocket, o.Transport);
        Assert.Equal(1, o.Processes);
        Assert.Equal(Placement.Users, o.Placement);
        Assert.Equal(0, o.AckIntervalMs); // no acks: the figures of docs/benchmarks.md unless a run says otherwise
        Assert.Matches("^b[0-9a-f]{8}$", o.RunId);
    }

    [Theory]
    [InlineData("group", 100, 30, 5)]
    [InlineData("reconnect", 200, 10, 0)]
    [InlineData("connections", 0, 30, 0)]
    public void Parse_OtherScenarios_HaveTheirOwnDefaults(string scenario, double rate, double duration, double warmup)
    {
        var o = Parse(scenario);

        Assert.Equal(rate, o.Rate);
        Assert.Equal(duration, o.DurationSeconds);
        Assert.Equal(warmup, o.WarmupSeconds);
    }

    [Fact]
    public void Parse_EveryOption_IsRead()
    {
        var o = Parse(
            "group", "--url", "http://a:1,http://b:2/", "--url=http://c:3", "--users", "300", "--rate", "50.5", "--duration", "12", "--warmup", "0",
            "--grace", "9", "--group-size", "30", "--connections", "7", "--connect-rate", "90", "--offline", "4", "--settle", "2", "--transport", "rest",
            "--message-bytes", "200", "--http-connections", "16", "--source-addresses", "127.0.0.2-127.0.0.5", "--processes", "3",
            "--server-pid", "10,11", "--server-pid", "12", "--postgres-pids", "auto", "--max-p99-ms", "25", "--run-id", "nightly-1",
            "--progress", "plain", "--output", "r.json", "--placement", "conversations", "--ack-interval", "250");

        Assert.Equal(["http://a:1/", "http://b:2/", "http://c:3/"], o.Urls.Select(u => u.ToString()));
        Assert.Equal(Placement.Conversations, o.Placement);
        Assert.Equal((300, 50.5, 12.0, 0.0, 9.0, 30), (o.Users, o.Rate, o.DurationSeconds, o.WarmupSeconds, o.GraceSeconds, o.GroupSize));
        Assert.Equal((7, 90.0, 4.0, 2.0), (o.Connections, o.ConnectRate, o.OfflineSeconds, o.SettleSeconds));
        Assert.Equal((Transport.Rest, 200, 16), (o.Transport, o.MessageBytes, o.HttpConnections));
        Assert.Equal(250, o.AckIntervalMs);
        Assert.Equal(4, o.SourceAddresses.Count);
        Assert.Equal(3, o.Processes);
        Assert.Equal([10, 11, 12], o.ServerPids);
        Assert.True(o.PostgresAuto);
        Assert.Equal(25, o.MaxP99Ms);
        Assert.Equal(("nightly-1", ProgressMode.Plain, "r.json"), (o.RunId, o.Progress, o.OutputFile));
    }

    [Fact]
    public void Parse_JwtWithoutKey_UsesTheDevelopmentKeyIssuerAndAudience()
    {
        var o = Parse("chat", "--auth", "jwt");

        Assert.Equal((CommandLine.DevelopmentKey, CommandLine.DevelopmentIssuer, CommandLine.DevelopmentAudience), (o.TokenKey, o.TokenIssuer, o.TokenAudience));
    }

    [Fact]
    public void Parse_JwtKeyFromTheEnvironment_HasNoDevelopmentIssuer()
    {
        var key = new string('k', 32);
        var result = CommandLine.Parse(["chat", "--auth", "jwt"], name => name == CommandLine.TokenKeyVariable ? key : null);

        Assert.Equal(key, result.Options!.TokenKey);
        Assert.Null(result.Options.TokenIssuer);
    }

    [Theory]
    [InlineData("unknown scenario 'chatter'", "chatter")]
    [InlineData("unknown option '--user'", "chat", "--user", "10")]
    [InlineData("--users needs a value", "chat", "--users")]
    [InlineData("--users 0: expected a whole number from 2", "chat", "--users", "0")]
    [InlineData("chat needs an even number of users", "chat", "--users", "11")]
    [InlineData("group needs a multiple of --group-size 100", "group", "--users", "150")]
    [InlineData("more processes than pairs (5)", "chat", "--users", "10", "--processes", "6")]
    [InlineData("at least 32 bytes", "chat", "--auth", "jwt", "--token-key", "short")]
    [InlineData("--transport bus: expected websocket", "chat", "--transport", "bus")]
    [InlineData("--url: the address must start with http", "chat", "--url", "ftp://x")]
    [InlineData("--placement servers: expected users, conversations", "chat", "--placement", "servers")]
    [InlineData("--source-addresses 127.0.0.9-127.0.0.1", "chat", "--source-addresses", "127.0.0.9-127.0.0.1")]
    public void Parse_Invalid_SaysWhy(string expected, params string[] args) => Assert.Contains(expected, Error(args), StringComparison.Ordinal);

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public void Parse_Help_AsksForHelp(string arg) => Assert.True(CommandLine.Parse(["chat", arg]).Help);

    [Fact]
    public void Parse_PostgresPortOrDataDirectory_MeasuresThatServerOnly()
    {
        var byPort = Parse("chat", "--postgres-port", "25432");
        var byData = Parse("chat", "--postgres-data", "/srv/pg/15/main");

        Assert.Equal((true, 25432, null), (byPort.PostgresAuto, byPort.PostgresPort, byPort.PostgresDataDirectory));
        Assert.Equal((true, null, "/srv/pg/15/main"), (byData.PostgresAuto, byData.PostgresPort, byData.PostgresDataDirectory));
        Assert.Contains("--postgres-port", Error("chat", "--postgres-port", "0"), StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_ListsEveryPublicOption_AndNotTheChildOption()
    {
        var usage = CommandLine.Usage();

        foreach (var option in new[] { "--url", "--users", "--rate", "--duration", "--warmup", "--grace", "--group-size", "--connections", "--connect-rate",
            "--offline", "--settle", "--transport", "--message-bytes", "--http-connections", "--auth", "--token-key", "--token-issuer", "--token-audience",
            "--source-addresses", "--processes", "--server-pid", "--placement", "--postgres-pids", "--postgres-port", "--postgres-data", "--max-p99-ms", "--run-id", "--progress", "--output", "--ack-interval" })
        {
            Assert.Contains(option + " ", usage, StringComparison.Ordinal);
        }

        Assert.DoesNotContain(CommandLine.ChildOption, usage, StringComparison.Ordinal);
    }

    [Fact]
    public void ChildArguments_KeepTheParentsOptions_SetTheRunIdAndSlice()
    {
        var parent = Parse("chat", "--users", "20", "--run-id", "r1", "--progress", "live", "--output=x.json", "--processes", "2");

        var args = CommandLine.ChildArguments(["chat", "--users", "20", "--run-id", "r1", "--progress", "live", "--output=x.json", "--processes", "2"], parent, 1);
        var child = Parse([.. args]);

        Assert.Equal(["chat", "--users", "20", "--processes", "2", "--run-id", "r1", "--progress", "none", "--child", "1"], args);
        Assert.Equal((1, "r1", ProgressMode.None, (string?)null), (child.ChildIndex, child.RunId, child.Progress, child.OutputFile));
    }
}

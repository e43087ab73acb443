using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Parley.Bench.Reporting;
using Parley.Bench.Tests.Infrastructure;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Bench.Tests;

/// <summary>
/// A small run of every scenario against the real server (in this process, on Kestrel and its own SQLite file):
/// nothing lost, nothing duplicated, the result line parses. Latency is never asserted: these runs prove the tool
/// and the protocol work together, not how fast. One run starts the tool as a real process split over two children.
/// </summary>
[Trait("Store", "Independent")]
public sealed class SmokeRunTests(BenchServer server) : IClassFixture<BenchServer>
{
    private string Url => server.Address.ToString();

    [Fact]
    public async Task Chat_OverTheSocket_DeliversEveryMessageOnceAndMeasuresTheServer()
    {
        var (exitCode, result, output, errors) = await BenchRun.InProcessAsync(
            "chat", "--url", Url, "--users", "20", "--rate", "100", "--duration", "2", "--warmup", "0.5",
            "--server-pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture));

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal("chat", r.Scenario);
        Assert.Equal("websocket", r.Transport);
        Assert.Equal(200, r.Offered);
        Assert.Equal(r.Offered, r.Acknowledged);
        Assert.Equal(r.Offered, r.Delivered);
        Assert.Equal(r.Offered, r.LatencyMs!.Count);
        Assert.Equal(20, r.Connections.Opened);
        Assert.NotNull(r.Server);
        Assert.True(r.Server.RssAfterBytes > 0);
        Assert.Contains("verdict", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Chat_WithAcks_DevicesAcknowledgeWhatTheyHold()
    {
        var acksBefore = await AckFramesReceivedAsync();

        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "chat", "--url", Url, "--users", "10", "--rate", "50", "--duration", "2", "--warmup", "0", "--ack-interval", "100");

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal(100, r.Delivered);
        Assert.Equal(100, r.Settings.AckIntervalMs);
        // Ten devices, each acknowledging its conversation as it moved, every 100 ms for about two seconds.
        Assert.InRange(await AckFramesReceivedAsync() - acksBefore, 10, 10 * 30);
    }

    /// <summary>The server's count of <c>ack</c> frames received so far (its <c>/metrics</c>, which answers this machine).</summary>
    private async Task<double> AckFramesReceivedAsync()
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync(new Uri(server.Address, "/metrics"), TestContext.Current.CancellationToken);
        var line = text.Split('\n').SingleOrDefault(l => l.StartsWith("parley_frames_in_total{", StringComparison.Ordinal) && l.Contains("type=\"ack\"", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Chat_OverRest_DeliversEveryMessageOnce()
    {
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "chat", "--transport", "rest", "--url", Url, "--users", "10", "--rate", "50", "--duration", "2", "--warmup", "0", "--http-connections", "8");

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal("rest", r.Transport);
        Assert.Equal(100, r.Delivered);
    }

    [Fact]
    public async Task Group_EveryMessageReachesEveryOtherMember()
    {
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "group", "--url", Url, "--users", "12", "--group-size", "4", "--rate", "30", "--duration", "2", "--warmup", "0");

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal(60, r.Offered);
        Assert.Equal(60 * 3, r.ExpectedDeliveries);
        Assert.Equal(r.ExpectedDeliveries, r.Delivered);
    }

    [Fact]
    public async Task Connections_OpensAndHoldsEveryConnection()
    {
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "connections", "--url", Url, "--connections", "40", "--connect-rate", "200", "--duration", "1",
            "--server-pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture));

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal(40, r.Connections.Opened);
        Assert.Equal(40, r.Connections.ConnectLatencyMs!.Count);
        Assert.NotNull(r.Server!.RssPerConnectionBytes);
    }

    [Fact]
    public async Task Reconnect_DevicesResumeFromTheirCursorsWithEveryMessage()
    {
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "reconnect", "--url", Url, "--connections", "10", "--rate", "20", "--duration", "1.5", "--settle", "1.5", "--offline", "1.5");

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal(60, r.Offered);
        Assert.Equal(60, r.Delivered);
        Assert.Equal(10, r.Reconnect!.Devices);
        Assert.Equal(10, r.Reconnect.Resumed);
        Assert.NotNull(r.Reconnect.ResumeSeconds);
        Assert.NotNull(r.Reconnect.CatchUpSeconds);
    }

    [Fact]
    public async Task Chat_WithTokensSignedByTheTool_IsAcceptedByAJwtServer()
    {
        await using var jwtServer = BenchServer.Jwt();
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "chat", "--url", jwtServer.Address.ToString(), "--users", "4", "--rate", "20", "--duration", "1", "--warmup", "0",
            "--auth", "jwt", "--token-key", BenchServer.SigningKey, "--token-issuer", BenchServer.Issuer, "--token-audience", BenchServer.Audience);

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal("jwt", r.Settings.Auth);
        Assert.Equal(20, r.Delivered);
    }

    [Fact]
    public async Task Chat_AgainstAServerThatRefusesTheCredentials_FailsTheSetUp()
    {
        // This server expects X-User-ID; bearer tokens are not what it reads, so every request is 401.
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "chat", "--url", Url, "--users", "2", "--rate", "10", "--duration", "1", "--auth", "jwt", "--token-key", BenchServer.SigningKey);

        Assert.Equal(Verdict.SetupFailed, exitCode);
        Assert.Null(result);
        Assert.Contains("set-up failed", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Chat_SplitOverTwoProcesses_MergesTheirResults()
    {
        var (exitCode, result, output, errors) = await BenchRun.ProcessAsync(
            "chat", "--url", Url, "--processes", "2", "--users", "12", "--rate", "60", "--duration", "2", "--warmup", "0.5",
            "--source-addresses", "127.0.0.2-127.0.0.3", "--progress", "plain");

        var r = AssertClean(exitCode, result, errors + output);
        Assert.Equal(2, r.Processes);
        Assert.Equal(120, r.Offered);
        Assert.Equal(120, r.Delivered);
        Assert.Equal(120, r.LatencyMs!.Count); // the children's histograms, merged
        Assert.Equal(12, r.Connections.Opened);
        Assert.Contains("[0] creating 3 direct conversations", errors, StringComparison.Ordinal);
        Assert.Contains("[1] creating 3 direct conversations", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Relay_WatchesAWebhookSinkDrainTheBacklogThatGrewWhileItsReceiverRefused()
    {
        using var receiver = new HttpListener();
        var port = TestServerSettings.FreePort();
        receiver.Prefixes.Add($"http://127.0.0.1:{port}/");
        receiver.Start();
        var accept = false;
        var receiving = Task.Run(async () =>
        {
            while (receiver.IsListening)
            {
                HttpListenerContext request;
                try
                {
                    request = await receiver.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                request.Response.StatusCode = Volatile.Read(ref accept) ? 200 : 503;
                request.Response.Close();
            }
        }, Ct);
        await using var streaming = BenchServer.With(new Dictionary<string, string?>
        {
            ["Events:PollInterval"] = "00:00:00.020",
            ["Events:Webhooks:bench:Url"] = $"http://127.0.0.1:{port}/parley",
            ["Events:Webhooks:bench:Secret"] = "smoke-test-secret-0123456789",
            ["Events:Webhooks:bench:InitialBackoff"] = "00:00:00.050",
            ["Events:Webhooks:bench:MaxBackoff"] = "00:00:00.100",
            ["Events:Webhooks:bench:MaxAttempts"] = "100",
        });
        using var http = new HttpClient { BaseAddress = streaming.Address };
        http.DefaultRequestHeaders.Add("X-User-ID", "relay-alice");
        using var created = await http.PostAsJsonAsync("/api/v1/conversations", new { type = "direct", participant_ids = new[] { "relay-bob" } }, Ct);
        created.EnsureSuccessStatusCode();
        var conversation = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetGuid();
        for (var i = 0; i < 20; i++)
        {
            using var sent = await http.PostAsJsonAsync("/api/v1/messages", new { conversation_id = conversation, message_type = "text", content = $"m{i}" }, Ct);
            sent.EnsureSuccessStatusCode();
        }

        var run = BenchRun.InProcessAsync("relay", "--url", streaming.Address.ToString(), "--sink", "webhook:bench", "--duration", "30");
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        Volatile.Write(ref accept, true);
        var (exitCode, result, output, errors) = await run;
        receiver.Stop();
        await receiving;

        Assert.True(exitCode == 0, $"exit code {exitCode}\n{output}\n{errors}");
        var relay = result!.Relay!;
        Assert.Equal("none", result.Transport);
        Assert.Equal("webhook:bench", relay.Sink);
        Assert.True(relay.BacklogPeak >= 20, $"backlog peak {relay.BacklogPeak}");
        Assert.Equal(0, relay.BacklogAtEnd);
        Assert.True(relay.Published >= 20, $"published {relay.Published}");
        Assert.NotNull(relay.DrainSeconds);
        Assert.Contains("drain rate", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Relay_AgainstAServerWithoutTheSink_FailsTheSetUpNamingIt()
    {
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync("relay", "--url", Url, "--sink", "kafka", "--duration", "1");

        Assert.Equal(Verdict.SetupFailed, exitCode);
        Assert.Null(result);
        Assert.Contains("no parley_events_backlog for sink \"kafka\"", errors, StringComparison.Ordinal);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Chat_AgainstTheMinimalRelay_DeliversEveryMessageOnce()
    {
        // The yardstick of docs/benchmarks.md: the same command must run against it unchanged.
        await using var relay = Parley.Relay.RelayApp.Create(["--urls", "http://127.0.0.1:0"]);
        await relay.StartAsync(TestContext.Current.CancellationToken);
        var (exitCode, result, _, errors) = await BenchRun.InProcessAsync(
            "chat", "--url", TestServerSettings.KestrelAddress(relay.Services).ToString(), "--users", "20", "--rate", "100", "--duration", "2",
            "--warmup", "0.5");

        var r = AssertClean(exitCode, result, errors);
        Assert.Equal(200, r.Offered);
        Assert.Equal(r.Offered, r.Acknowledged);
        Assert.Equal(r.Offered, r.Delivered);
        Assert.Equal(0, r.Duplicated);
        await relay.StopAsync(TestContext.Current.CancellationToken);
    }

    private static BenchResult AssertClean(int exitCode, BenchResult? result, string log)
    {
        Assert.True(result is not null, "no result line; output:\n" + log);
        Assert.True(exitCode == 0, $"exit code {exitCode}: {string.Join("; ", result.Failures)}\n{log}");
        Assert.True(result.Passed);
        Assert.Equal(0, result.Lost);
        Assert.Equal(0, result.Duplicated);
        Assert.Equal(0, result.OutOfOrder);
        Assert.Equal(0, result.Unanswered);
        Assert.Empty(result.Errors);
        Assert.Equal(0, result.Connections.Failed);
        return result;
    }
}

using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Observability;
using Parley.Server.Protocol;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// <c>/metrics</c> in Prometheus text format on a real server (Kestrel: the client's address is 127.0.0.1): what it
/// shows after real traffic, who may read it (Metrics:AllowedNetworks, Metrics:Port, Metrics:Enabled), and that the
/// public API description leaves it out.
/// </summary>
public sealed class MetricsEndpointTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Scrape_AfterSocketsConnectAndAMessageIsSent_ShowsConnectionsFramesAndTheSendToSocketLatency()
    {
        await using var factory = new ParleyFactory().StartKestrel();
        using var scraper = factory.Anonymous();
        var before = await ScrapeAsync(scraper, text => Value(text, "parley_connections_open") is not null);
        Assert.Equal(0, Value(before, "parley_connections_open"));
        Assert.Null(Value(before, "parley_frames_out_total", ("type", "new_message")));

        using var alice = factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var aliceSocket = await WsClient.ConnectAsync(factory, "alice");
        await using (var bobSocket = await WsClient.ConnectAsync(factory, "bob"))
        {
            await aliceSocket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "hi", client_message_id = "m-1" });
            await aliceSocket.NextAsync("message_ack");
            await aliceSocket.NextAsync("new_message");
            await bobSocket.NextAsync("new_message");

            var during = await ScrapeAsync(scraper, text => Value(text, "parley_frames_out_total", ("type", "new_message")) >= 2);
            Assert.Equal(2, Value(during, "parley_connections_open"));
            Assert.Equal(2, Value(during, "parley_connections_opened_total"));
            Assert.Equal(2, Value(during, "parley_frames_out_total", ("type", "new_message")));
            Assert.Equal(2, Value(during, "parley_frames_out_total", ("type", "connected")));
            Assert.Equal(1, Value(during, "parley_frames_out_total", ("type", "message_ack")));
            Assert.Equal(1, Value(during, "parley_frames_in_total", ("type", "send_message")));
            Assert.Contains("# TYPE parley_send_to_socket_duration_seconds histogram", during, StringComparison.Ordinal);
            Assert.True(Value(during, "parley_send_to_socket_duration_seconds_count") >= 2);
            Assert.NotNull(Value(during, "parley_send_to_socket_duration_seconds_bucket", ("le", "0.1")));
            Assert.NotNull(Value(during, "parley_outbound_queue_depth"));
            Assert.NotNull(Value(during, "parley_stream_sequencer_lag_seconds"));

            // ASP.NET Core's and the runtime's own metrics come with Parley's.
            Assert.True(
                Value(during, "http_server_request_duration_seconds_count", ("http_route", "/api/v1/conversations/"), ("http_response_status_code", "201")) >= 1,
                string.Join(Environment.NewLine, during.Split('\n').Where(l => l.StartsWith("http_server_request_duration_seconds_count", StringComparison.Ordinal))));
            Assert.Contains("dotnet_gc_collections_total", during, StringComparison.Ordinal);
            Assert.Contains("dotnet_thread_pool_thread_count", during, StringComparison.Ordinal);
        }

        var after = await ScrapeAsync(scraper, text => Value(text, "parley_connections_closed_total", ("reason", "normal")) >= 1);
        Assert.True(Value(after, "parley_connections_open") == 1, after);
    }

    [Fact]
    public async Task Scrape_WhileIdle_CountsNoCommits()
    {
        // On PostgreSQL the stream sequencer passes every 20 ms; each committed, nothing written, and about 48 empty commits
        // a second per instance made most of the commit metrics (their latency percentiles, their batch sizes).
        await using var factory = new ParleyFactory().StartKestrel();
        using var scraper = factory.Anonymous();
        using var alice = factory.BoundedApi("alice");
        await alice.SendTextAsync((await alice.CreateDirectAsync("bob")).Id, "one");
        var settled = await ScrapeAsync(scraper, t => Value(t, "parley_store_commit_duration_seconds_count") >= 2);
        await Task.Delay(TimeSpan.FromSeconds(1), Ct); // the sequencer positions "one", then passes idle

        var before = Value(await ScrapeAsync(scraper, _ => true), "parley_store_commit_duration_seconds_count");
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        var after = Value(await ScrapeAsync(scraper, _ => true), "parley_store_commit_duration_seconds_count");

        Assert.NotNull(Value(settled, "parley_store_commit_duration_seconds_count"));
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task Scrape_AfterSends_ShowsTheStoresCommitsAndTheSendsTheyCarried()
    {
        await using var factory = new ParleyFactory().StartKestrel();
        using var scraper = factory.Anonymous();
        using var alice = factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await Task.WhenAll(Enumerable.Range(0, 5).Select(i => alice.SendTextAsync(conversation.Id, $"m{i}", $"k-{i}")));

        // The group commit reports each transaction with the number of sends it carried: five sends in all.
        var text = await ScrapeAsync(scraper, t => Value(t, "parley_store_commit_batch_size_sum") >= 6);
        Assert.Contains("# TYPE parley_store_commit_duration_seconds histogram", text, StringComparison.Ordinal);
        Assert.True(Value(text, "parley_store_commit_duration_seconds_count") >= 2); // the conversation's creation, then the sends
        // At 0 from the start, one series per operation (a series that first appears at 1 escapes increase() and rate()).
        foreach (var operation in new[] { "open", "write", "send_batch" })
        {
            Assert.Equal(0, Value(text, "parley_store_errors_total", ("operation", operation)));
        }

        // SQLite's commits run on one thread, whose CPU clock measures them (on 64-bit Linux): some CPU, never more than
        // the commits' own duration. PostgreSQL's are not measured.
        var cpu = Value(text, "parley_store_commit_cpu_seconds_total", ("store", "sqlite"));
        if (!TestPostgres.Selected && ThreadCpuClock.IsSupported)
        {
            Assert.True(cpu > 0, text);
            Assert.True(cpu <= Value(text, "parley_store_commit_duration_seconds_sum", ("store", "sqlite")), text);
        }
        else
        {
            Assert.Null(cpu);
        }

        Assert.Null(Value(text, "parley_store_commit_cpu_seconds_total", ("store", "postgres")));
    }

    [Fact]
    public async Task Scrape_AnotherServerInTheProcess_ItsTrafficIsNotCountedAndItsShutdownTakesNoSeriesAway()
    {
        // Every test server in this process makes meters of the same names; each one's scrape is its own.
        await using var server = new ParleyFactory().StartKestrel();
        using var scraper = server.Anonymous();
        await ScrapeAsync(scraper, text => Value(text, "parley_connections_open") is not null);
        var other = new ParleyFactory().StartKestrel();
        var otherMetrics = other.Services.GetRequiredService<ParleyMetrics>();
        otherMetrics.ConnectionOpened(ParleyMetrics.UpgradePipeline);
        otherMetrics.FrameWritten(FrameTypes.NewMessage, handedOffAt: 0);
        using (var otherClient = other.Anonymous())
        {
            using var health = await otherClient.GetAsync(new Uri("/health", UriKind.Relative), Ct);
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        }

        // Each scrape past the exporter's 300 ms cache; a stream ends at the first collection after its instrument did.
        var whileBothRun = await FreshScrapeAsync(scraper);
        await other.DisposeAsync();
        await FreshScrapeAsync(scraper);
        var afterTheOtherStopped = await FreshScrapeAsync(scraper);

        Assert.Null(Value(whileBothRun, "parley_connections_opened_total"));
        Assert.Null(Value(whileBothRun, "parley_frames_out_total", ("type", "new_message")));
        Assert.Null(Value(whileBothRun, "http_server_request_duration_seconds_count", ("http_route", "/health")));
        Assert.Equal(0, Value(afterTheOtherStopped, "parley_connections_open"));
        Assert.NotNull(Value(afterTheOtherStopped, "http_server_request_duration_seconds_count", ("http_route", "/metrics")));
    }

    [Fact]
    public async Task Scrape_FromAnAddressOutsideTheAllowedNetworks_Returns404ProblemLikeAnUnknownPath()
    {
        await using var factory = new ParleyFactory(s => s["Metrics:AllowedNetworks:0"] = "10.0.0.0/8").StartKestrel();
        using var client = factory.Anonymous();

        using var response = await client.GetAsync(new Uri("/metrics", UriKind.Relative), Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task Scrape_AllowedNetworkIncludesTheClient_Returns200()
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["Metrics:AllowedNetworks:0"] = "10.0.0.0/8";
            s["Metrics:AllowedNetworks:1"] = "127.0.0.1";
        }).StartKestrel();
        using var client = factory.Anonymous();

        var text = await ScrapeAsync(client, _ => true);

        Assert.Contains("parley_connections_open", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Scrape_MetricsDisabled_Returns404()
    {
        await using var factory = new ParleyFactory(s => s["Metrics:Enabled"] = "false").StartKestrel();
        using var client = factory.Anonymous();

        using var response = await client.GetAsync(new Uri("/metrics", UriKind.Relative), Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task MetricsPort_ServesMetricsThereOnly_AndTheApiStaysOnItsOwnAddress()
    {
        var port = TestServerSettings.FreePort();
        await using var factory = new ParleyFactory(s => s["Metrics:Port"] = port.ToString(CultureInfo.InvariantCulture)).StartKestrel();
        using var main = factory.Anonymous();
        using var metrics = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = Bound };

        var text = await ScrapeAsync(metrics, _ => true);
        using var metricsOnMain = await main.GetAsync(new Uri("/metrics", UriKind.Relative), Ct);
        using var apiOnMain = await main.GetAsync(new Uri("/health", UriKind.Relative), Ct);
        using var apiOnMetrics = await metrics.GetAsync(new Uri("/health", UriKind.Relative), Ct);

        Assert.Contains("parley_connections_open", text, StringComparison.Ordinal);
        await ParleyApi.ProblemAsync(metricsOnMain, HttpStatusCode.NotFound, "not_found");
        Assert.Equal(HttpStatusCode.OK, apiOnMain.StatusCode);
        await ParleyApi.ProblemAsync(apiOnMetrics, HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task OpenApiDocument_DoesNotDescribeMetrics()
    {
        await using var factory = new ParleyFactory().StartKestrel();
        using var client = factory.Anonymous();
        await ScrapeAsync(client, _ => true);

        var document = await client.GetStringAsync(new Uri("/openapi/v1.json", UriKind.Relative), Ct);

        Assert.Contains("/api/v1/conversations", document, StringComparison.Ordinal);
        Assert.DoesNotContain("/metrics", document, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AllowedNetworks_NotANetwork_ServerExits1NamingTheSetting()
    {
        var directory = Directory.CreateTempSubdirectory("parley-metrics-");
        try
        {
            var run = await ServerCommand.RunAsync(
                directory.FullName, "Development", ["--urls", "http://127.0.0.1:0", "--Metrics:AllowedNetworks:0=intranet"], TimeSpan.FromSeconds(60));

            Assert.Equal(1, run.ExitCode);
            Assert.StartsWith("Parley cannot start: invalid configuration.", run.Error, StringComparison.Ordinal);
            Assert.Contains("  - Metrics:AllowedNetworks:0 is 'intranet'; expected a network in CIDR notation", run.Error, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task HotPathRecording_UnderTheServersOpenTelemetryPipeline_AllocatesNothing()
    {
        // The server's own metrics: Prometheus exporter, OpenTelemetry aggregation listening to every instrument.
        await using var factory = new ParleyFactory();
        var metrics = factory.Services.GetRequiredService<ParleyMetrics>();
        var time = factory.Services.GetRequiredService<TimeProvider>();
        string[] types = [FrameTypes.NewMessage, FrameTypes.Typing, FrameTypes.MessageAck];
        for (var i = 0; i < 1000; i++)
        {
            Record(metrics, types[i % types.Length], time.GetTimestamp());
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            Record(metrics, types[i % types.Length], time.GetTimestamp());
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        static void Record(ParleyMetrics metrics, string type, long handedOffAt)
        {
            metrics.FrameReceived(FrameTypes.SendMessage);
            metrics.FrameWritten(type, handedOffAt);
        }
    }

    /// <summary>
    /// Scrapes until <paramref name="until"/> holds (the exporter caches a scrape briefly, and the send loops count
    /// after the client already got the frame), asserting each answer is Prometheus text.
    /// </summary>
    private static async Task<string> ScrapeAsync(HttpClient client, Func<string, bool> until)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            using var response = await client.GetAsync(new Uri("/metrics", UriKind.Relative), Ct);
            var text = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
            Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
            if (until(text))
            {
                return text;
            }

            Assert.True(DateTime.UtcNow < deadline, "The scrape never showed what the test waited for:" + Environment.NewLine + text);
            await Task.Delay(100, Ct);
        }
    }

    private static async Task<string> FreshScrapeAsync(HttpClient client)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(400), Ct);
        return await ScrapeAsync(client, _ => true);
    }

    /// <summary>The value of the series <paramref name="name"/> whose labels include <paramref name="labels"/>; null when absent.</summary>
    private static double? Value(string text, string name, params (string Label, string Value)[] labels)
    {
        foreach (var line in text.Split('\n'))
        {
            if (!(line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal)))
            {
                continue;
            }

            var end = line.IndexOf('}', StringComparison.Ordinal);
            var labelText = end < 0 ? string.Empty : line[..end];
            if (labels.All(l => labelText.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            {
                var value = line[(end < 0 ? name.Length : end + 1)..].Trim().Split(' ')[0];
                return double.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        return null;
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// PostgreSQL going away and coming back, on a cluster of this class's own: requests fail fast with 503 and
/// Retry-After (never hang, never half-write), /ready says not ready, and Parley recovers by itself.
/// </summary>
[Trait("Store", "Independent")]
public sealed class PostgresOutageTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(12);
    private PostgresCluster? _cluster;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _cluster = await PostgresCluster.StartNewAsync();
        await _cluster.CreateDatabaseAsync("parley");
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task DatabaseStopsMidRun_RequestsFailFastWith503_ThenRecoverWithoutRestart()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var factory = new ParleyFactory(sharedPostgres: _cluster!.ConnectionString("parley"));
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "before");
        using var anonymous = factory.Anonymous();
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/ready", ct)).StatusCode);

        await _cluster.StopAsync();

        var clock = Stopwatch.StartNew();
        var failed = await alice.PostAsync("/api/v1/messages", new { conversation_id = conversation.Id, content = "during", message_type = "text" });
        Assert.True(clock.Elapsed < Bound, $"the send took {clock.Elapsed}");
        await ParleyApi.ProblemAsync(failed, HttpStatusCode.ServiceUnavailable, "service_unavailable");
        Assert.NotNull(failed.Headers.RetryAfter);
        clock.Restart();
        await ParleyApi.ProblemAsync(await alice.GetAsync($"/api/v1/conversations/{conversation.Id}/messages"), HttpStatusCode.ServiceUnavailable, "service_unavailable");
        Assert.True(clock.Elapsed < Bound, $"the read took {clock.Elapsed}");
        var notReady = await ReadReportAsync(anonymous, HttpStatusCode.ServiceUnavailable);
        Assert.StartsWith("The database does not answer", StorageCheck(notReady).GetProperty("description").GetString(), StringComparison.Ordinal);
        // The client configuration needs no database.
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/api/v1/config", ct)).StatusCode);

        await _cluster.StartAsync();

        // The same server instance serves again once the database answers: no restart.
        var last = "";
        var recovered = await EventuallyAsync(async () =>
        {
            var response = await alice.PostAsync("/api/v1/messages", new { conversation_id = conversation.Id, content = "after", message_type = "text" });
            last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}";
            return response.StatusCode == HttpStatusCode.Created;
        });
        Assert.True(recovered, "Parley did not recover after the database came back; last answer: " + last);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/ready", ct)).StatusCode);
        // The send that failed left nothing behind: history is exactly the two acknowledged messages, in order.
        var history = await alice.ListMessagesAsync(conversation.Id, "?after=0");
        Assert.Equal(["before", "after"], history.Messages.Select(m => m.Content));
        Assert.Equal([2L, 3L], history.Messages.Select(m => m.Seq));
    }

    [Fact(Timeout = 120_000)]
    public async Task DatabaseDownAtStart_ServerStartsNotReady_ThenMigratesAndServesWhenItReturns()
    {
        var ct = TestContext.Current.CancellationToken;
        await _cluster!.StopAsync();

        await using var factory = new ParleyFactory(sharedPostgres: _cluster.ConnectionString("parley"));
        using var anonymous = factory.Anonymous();
        using var alice = factory.Api("alice");

        // /ready was 503 with an empty body: the report says which dependency is down and why.
        var notReady = await ReadReportAsync(anonymous, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("Unhealthy", StorageCheck(notReady).GetProperty("status").GetString());
        Assert.Equal("Schema migrations have not finished.", StorageCheck(notReady).GetProperty("description").GetString());
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health", ct)).StatusCode);
        // GET /api/v1/config needs no storage: it answered 503 until the database came back.
        using var config = await anonymous.GetAsync("/api/v1/config", ct);
        Assert.Equal(HttpStatusCode.OK, config.StatusCode);
        Assert.Equal(4096, (await ParleyApi.ReadAsync<System.Text.Json.JsonElement>(config)).GetProperty("max_content_length").GetInt32());
        var refused = await alice.GetAsync("/api/v1/conversations");
        await ParleyApi.ProblemAsync(refused, HttpStatusCode.ServiceUnavailable, "service_unavailable");
        Assert.NotNull(refused.Headers.RetryAfter);

        await _cluster.StartAsync();

        Assert.True(await EventuallyAsync(async () => (await anonymous.GetAsync("/ready", ct)).StatusCode == HttpStatusCode.OK), "never became ready");
        var conversation = await alice.CreateDirectAsync("bob");
        Message sent = await alice.SendTextAsync(conversation.Id, "hello");
        Assert.Equal(2, sent.Seq);
    }

    private static async Task<System.Text.Json.JsonElement> ReadReportAsync(HttpClient client, HttpStatusCode status)
    {
        using var response = await client.GetAsync("/ready", Ct);
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var report = await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>(Ct);
        Assert.Equal("Unhealthy", report.GetProperty("status").GetString());
        return report;
    }

    private static System.Text.Json.JsonElement StorageCheck(System.Text.Json.JsonElement report) =>
        report.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "storage");

    private static async Task<bool> EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(45);
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(250, Ct);
        }

        return false;
    }
}

using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Anonymous endpoints: liveness, readiness, the client configuration, the OpenAPI document and the API reference page.</summary>
public sealed class HealthAndConfigTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Health_WithoutCredentials_Returns200WithAJsonReportOfNoChecks()
    {
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync("/health", Ct);

        var report = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("Healthy", report.GetProperty("status").GetString());
        Assert.Equal(0, report.GetProperty("checks").GetArrayLength());
        Assert.True(report.GetProperty("total_duration_ms").GetDouble() >= 0);
    }

    [Fact]
    public async Task Ready_WithoutCredentials_Returns200WithTheStorageAndFanoutChecks()
    {
        // /ready answered a bare "Healthy" (and 503 with an empty body): now the report names each dependency.
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync("/ready", Ct);

        var report = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.Equal("Healthy", report.GetProperty("status").GetString());
        var checks = report.GetProperty("checks").EnumerateArray().ToList();
        Assert.Equal(["storage", "connections", "fanout"], checks.Select(c => c.GetProperty("name").GetString()));
        var storage = checks[0];
        Assert.Equal("Healthy", storage.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, storage.GetProperty("description").ValueKind);
        Assert.True(storage.GetProperty("duration_ms").GetDouble() >= 0);
        Assert.Equal("Healthy", checks[1].GetProperty("status").GetString());
        Assert.Equal(("Healthy", "in-process (one instance)"), (checks[2].GetProperty("status").GetString(), checks[2].GetProperty("description").GetString()));
        Assert.Contains("no-store", response.Headers.CacheControl?.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/health")]
    [InlineData("/ready")]
    public async Task Probe_Head_Returns200(string path)
    {
        using var client = _factory.Anonymous();

        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, path), Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("POST", "/health")]
    [InlineData("PUT", "/health")]
    [InlineData("DELETE", "/health")]
    [InlineData("PATCH", "/ready")]
    [InlineData("POST", "/ready")]
    [InlineData("DELETE", "/ready")]
    public async Task Probe_OtherMethods_Get405ProblemDetails(string method, string path)
    {
        // Every method answered 200 before.
        using var client = _factory.Anonymous();

        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path), Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.MethodNotAllowed, "method_not_allowed");
        Assert.Equal(["GET", "HEAD"], response.Content.Headers.Allow);
    }

    [Fact]
    public async Task Config_WithoutCredentials_ReturnsTheDefaultLimits()
    {
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync("/api/v1/config", Ct);

        var config = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(172_800, config.GetProperty("edit_window_seconds").GetInt64());
        Assert.Equal(4096, config.GetProperty("max_content_length").GetInt32());
        Assert.Equal(65_536, config.GetProperty("max_request_bytes").GetInt32());
        Assert.Equal(65_536, config.GetProperty("max_frame_bytes").GetInt32());
        Assert.Equal(1000, config.GetProperty("max_group_participants").GetInt32());
        Assert.Equal(128, config.GetProperty("max_conversation_name_length").GetInt32());
        Assert.Equal(100, config.GetProperty("max_page_size").GetInt32());
        Assert.Equal(1000, config.GetProperty("typing_max_conversation_size").GetInt32());
        // ParleyFactory raises the send rate for every test; the endpoint reports the configured values.
        Assert.Equal(100_000, config.GetProperty("send_rate_per_second").GetInt32());
        Assert.Equal(100_000, config.GetProperty("send_burst").GetInt32());
    }

    [Fact]
    public async Task Config_ConfiguredLimits_AreTheOnesReported()
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["Limits:MaxContentLength"] = "1000";
            s["Limits:EditWindow"] = "00:15:00";
            s["Limits:MaxGroupParticipants"] = "12";
            s["Realtime:TypingMaxConversationSize"] = "50";
        });
        using var client = factory.Anonymous();

        using var response = await client.GetAsync("/api/v1/config", Ct);

        var config = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.Equal(1000, config.GetProperty("max_content_length").GetInt32());
        Assert.Equal(900, config.GetProperty("edit_window_seconds").GetInt64());
        Assert.Equal(12, config.GetProperty("max_group_participants").GetInt32());
        Assert.Equal(50, config.GetProperty("typing_max_conversation_size").GetInt32());
    }

    [Fact]
    public async Task OpenApi_WithoutCredentials_DescribesTheMessagesAndConversationsApi()
    {
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync("/openapi/v1.json", Ct);

        var document = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.StartsWith("3.", document.GetProperty("openapi").GetString(), StringComparison.Ordinal);
        var paths = document.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/api/v1/messages", paths);
        Assert.Contains("/api/v1/conversations", paths);
        Assert.Contains("/api/v1/conversations/{id}/messages", paths);
        Assert.Contains("/api/v1/conversations/{id}/participants", paths);
        var conversations = document.GetProperty("paths").GetProperty("/api/v1/conversations");
        Assert.True(conversations.TryGetProperty("post", out _), "POST /api/v1/conversations is not described");
        Assert.True(conversations.TryGetProperty("get", out _), "GET /api/v1/conversations is not described");
    }

    [Fact]
    public async Task EveryRead_AnswersHead_AndTheDocumentListsItOnceAsGet()
    {
        // An API route added with MapGet alone would answer HEAD with 405 (ReadRoutes.MapRead maps both).
        using var client = _factory.Anonymous();
        var document = await ParleyApi.ReadAsync<JsonElement>(await client.GetAsync("/openapi/v1.json", Ct));
        var routes = _factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Select(e => (Pattern: e.RoutePattern.RawText, Methods: e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []))
            .Where(r => r.Methods.Contains(HttpMethods.Get) && r.Pattern!.StartsWith("/api/", StringComparison.Ordinal))
            .ToList();

        Assert.Contains(routes, r => r.Pattern == "/api/v1/conversations/{id}/messages");
        Assert.All(routes, r => Assert.True(r.Methods.Contains(HttpMethods.Head), $"{r.Pattern} answers GET but not HEAD"));
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        {
            Assert.False(path.Value.TryGetProperty("head", out _), $"{path.Name} lists HEAD");
        }
    }

    [Fact]
    public async Task OpenApi_RequestBodiesAreRequired_AndProblemsCarryTheirCode()
    {
        using var client = _factory.Anonymous();

        var document = await ParleyApi.ReadAsync<JsonElement>(await client.GetAsync("/openapi/v1.json", Ct));

        var paths = document.GetProperty("paths");
        Assert.True(paths.GetProperty("/api/v1/messages").GetProperty("post").GetProperty("requestBody").GetProperty("required").GetBoolean());
        Assert.True(paths.GetProperty("/api/v1/conversations").GetProperty("post").GetProperty("requestBody").GetProperty("required").GetBoolean());
        var schemas = document.GetProperty("components").GetProperty("schemas");
        foreach (var name in new[] { "ProblemDetails", "HttpValidationProblemDetails" })
        {
            Assert.Equal("string", schemas.GetProperty(name).GetProperty("properties").GetProperty("code").GetProperty("type").GetString());
            Assert.Contains("code", schemas.GetProperty(name).GetProperty("required").EnumerateArray().Select(r => r.GetString()));
        }

        // The schema names what a problem body carries, under the names it carries them.
        using var anyone = _factory.Api("alice");
        var problem = await ParleyApi.ReadAsync<JsonElement>(await anyone.GetAsync($"/api/v1/conversations/{Guid.CreateVersion7()}"), HttpStatusCode.NotFound);
        var described = schemas.GetProperty("ProblemDetails").GetProperty("properties").EnumerateObject().Select(p => p.Name).ToHashSet();
        Assert.All(problem.EnumerateObject().Select(p => p.Name), name => Assert.Contains(name, described));
        Assert.DoesNotContain("traceId", described);
    }

    [Fact]
    public async Task OpenApi_TimestampsAreStrings_ClosedSetsAreEnums_PathIdsAreUuids_ReadsListNoBodyProblems()
    {
        // Generated clients typed timestamps as anything (a format without a type), and the path names disagreed with api.md.
        using var client = _factory.Anonymous();

        var document = await ParleyApi.ReadAsync<JsonElement>(await client.GetAsync("/openapi/v1.json", Ct));

        var schemas = document.GetProperty("components").GetProperty("schemas");
        var message = schemas.GetProperty("Message").GetProperty("properties");
        Assert.Equal("\"string\"", message.GetProperty("created_at").GetProperty("type").GetRawText());
        Assert.Equal("date-time", message.GetProperty("created_at").GetProperty("format").GetString());
        Assert.Equal(["null", "string"], message.GetProperty("edited_at").GetProperty("type").EnumerateArray().Select(t => t.GetString()).Order(StringComparer.Ordinal));
        Assert.Equal(["audio", "file", "image", "location", "system", "text", "video"], message.GetProperty("message_type").GetProperty("enum").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(["owner", "admin", "member"], schemas.GetProperty("Participant").GetProperty("properties").GetProperty("role").GetProperty("enum").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(["direct", "group"], schemas.GetProperty("CreateConversationRequest").GetProperty("properties").GetProperty("type").GetProperty("enum").EnumerateArray().Select(v => v.GetString()));

        var paths = document.GetProperty("paths");
        var member = paths.GetProperty("/api/v1/conversations/{id}/participants/{user_id}").GetProperty("patch").GetProperty("parameters").EnumerateArray().ToList();
        Assert.Equal("uuid", member.Single(p => p.GetProperty("name").GetString() == "id").GetProperty("schema").GetProperty("format").GetString());
        Assert.False(member.Single(p => p.GetProperty("name").GetString() == "user_id").GetProperty("schema").TryGetProperty("format", out _));
        Assert.True(paths.TryGetProperty("/api/v1/users/{user_id}/presence", out _));
        var read = paths.GetProperty("/api/v1/conversations/{id}").GetProperty("get").GetProperty("responses");
        Assert.True(read.TryGetProperty("404", out _));
        Assert.False(read.TryGetProperty("415", out _));
        Assert.True(paths.GetProperty("/api/v1/messages").GetProperty("post").GetProperty("responses").TryGetProperty("415", out _));
    }

    [Theory]
    [InlineData("/api/v1/conversations/{id}/messages", "limit", 1, 100, 50)]
    [InlineData("/api/v1/conversations/{id}/messages", "before", 1, null, null)]
    [InlineData("/api/v1/conversations/{id}/messages", "after", 0, null, null)]
    [InlineData("/api/v1/conversations", "limit", 1, 100, 20)]
    [InlineData("/api/v1/sync", "limit", 1, 1000, 200)]
    public async Task OpenApi_IntegerQueryParameters_AreDescribedAsIntegersWithTheirRange(string path, string name, int minimum, int? maximum, int? byDefault)
    {
        // They are bound as text (so a bad value gets Parley's own validation answer) and were described as strings.
        using var client = _factory.Anonymous();

        var document = await ParleyApi.ReadAsync<JsonElement>(await client.GetAsync("/openapi/v1.json", Ct));

        var parameter = document.GetProperty("paths").GetProperty(path).GetProperty("get").GetProperty("parameters").EnumerateArray()
            .Single(p => p.GetProperty("name").GetString() == name);
        var schema = parameter.GetProperty("schema");
        Assert.Equal("integer", schema.GetProperty("type").GetString());
        Assert.Equal(minimum, schema.GetProperty("minimum").GetInt32());
        Assert.Equal(maximum, schema.TryGetProperty("maximum", out var max) ? max.GetInt32() : null);
        Assert.Equal(byDefault, schema.TryGetProperty("default", out var value) ? value.GetInt32() : null);
    }

    [Theory]
    [InlineData("/api/v1/config", "get")]
    [InlineData("/health", "get")]
    [InlineData("/ready", "get")]
    public async Task OpenApi_AnonymousEndpoints_RequireNoAuthentication(string path, string method)
    {
        // The document requires a scheme everywhere; GET /api/v1/config was shown as needing a token.
        using var client = _factory.Anonymous();

        var document = await ParleyApi.ReadAsync<JsonElement>(await client.GetAsync("/openapi/v1.json", Ct));

        Assert.NotEqual(0, document.GetProperty("security").GetArrayLength());
        var operation = document.GetProperty("paths").GetProperty(path).GetProperty(method);
        Assert.True(operation.TryGetProperty("security", out var security), $"{method} {path} inherits the document's security");
        Assert.Equal(0, security.GetArrayLength());
        // An endpoint that needs a caller keeps the document's requirement.
        Assert.False(document.GetProperty("paths").GetProperty("/api/v1/messages").GetProperty("post").TryGetProperty("security", out _));
    }

    [Fact]
    public async Task ApiReference_HidesVendorToolsAgentAndTelemetry()
    {
        // Scalar's defaults showed "Deploy", "Generate SDK" (developer tools) and "Ask AI" (agent) buttons.
        using var client = _factory.Anonymous();

        var html = await client.GetStringAsync("/scalar/", Ct);

        Assert.Contains("\"showDeveloperTools\":\"never\"", html, StringComparison.Ordinal);
        Assert.Contains("\"agent\":{\"disabled\":true}", html, StringComparison.Ordinal);
        Assert.Contains("\"mcp\":{\"disabled\":true}", html, StringComparison.Ordinal);
        Assert.Contains("\"telemetry\":false", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiReference_WithoutCredentials_ServesAnHtmlPage()
    {
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync("/scalar/v1", Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<html", await response.Content.ReadAsStringAsync(Ct), StringComparison.OrdinalIgnoreCase);
    }
}

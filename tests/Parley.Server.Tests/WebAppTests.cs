using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Parley.Server.Tests.Infrastructure;
using Parley.Server.WebApp;

namespace Parley.Server.Tests;

/// <summary>
/// The chat app at /app: the App:Enabled setting and its default per environment, the files and their headers
/// (Content-Security-Policy, caching, ETags, gzip), how the app signs in, and development tokens.
/// </summary>
[Trait("Store", "Independent")]
public sealed class WebAppTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A server in <paramref name="environment"/>; <paramref name="developmentKey"/> drops the test key so that Development signs with its own.</summary>
    private static ParleyFactory Server(string environment, string? enabled = null, bool developmentKey = false, string? authMode = null) =>
        new(s =>
        {
            s["environment"] = environment;
            if (enabled is not null)
            {
                s["App:Enabled"] = enabled;
            }

            if (developmentKey || authMode == "Header")
            {
                s.Remove("Auth:Jwt:SigningKey");
                s.Remove("Auth:Jwt:Issuer");
                s.Remove("Auth:Jwt:Audience");
            }

            if (authMode is not null)
            {
                s["Auth:Mode"] = authMode;
            }
        });

    private static async Task<HttpStatusCode> IndexStatusAsync(ParleyFactory factory)
    {
        using var client = factory.Anonymous();
        using var response = await client.GetAsync("/app/", Ct);
        return response.StatusCode;
    }

    [Theory]
    [InlineData("Development", null, HttpStatusCode.OK)]
    [InlineData("Production", null, HttpStatusCode.NotFound)]
    [InlineData("Testing", null, HttpStatusCode.NotFound)]
    [InlineData("Production", "true", HttpStatusCode.OK)]
    [InlineData("Development", "false", HttpStatusCode.NotFound)]
    public async Task App_PerEnvironmentAndSetting_IsServedOrNot(string environment, string? enabled, HttpStatusCode expected)
    {
        await using var factory = Server(environment, enabled);

        Assert.Equal(expected, await IndexStatusAsync(factory));
    }

    [Fact]
    public async Task App_Disabled_AnswersLikeAnyUnknownPathAndMintsNoTokens()
    {
        await using var factory = Server("Development", "false", developmentKey: true);
        using var client = factory.Anonymous();

        using var index = await client.GetAsync("/app/index.html", Ct);
        using var token = await client.PostAsJsonAsync("/app/token", new { user_id = "alice" }, Ct);

        Assert.Equal(HttpStatusCode.NotFound, index.StatusCode);
        Assert.Equal("application/problem+json", index.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.NotFound, token.StatusCode);
    }

    [Fact]
    public void Enabled_NotABoolean_StopsStartUpNamingTheSetting()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["App:Enabled"] = "sometimes" }).Build();

        var problems = App.ConfigurationCheck.Check(configuration);

        var error = Assert.Single(problems.Errors);
        Assert.Contains("App:Enabled is 'sometimes'", error, StringComparison.Ordinal);
        Assert.Contains("true, false", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Index_HasTheAppsSecurityHeadersAndIsRevalidated()
    {
        await using var factory = Server("Production", "true");
        using var client = factory.Anonymous();

        using var response = await client.GetAsync("/app/", Ct);
        var html = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<div id=\"root\">", html, StringComparison.Ordinal);
        Assert.Equal(WebAppSetup.ContentSecurityPolicy, response.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Contains("script-src 'self'", WebAppSetup.ContentSecurityPolicy, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe", WebAppSetup.ContentSecurityPolicy, StringComparison.Ordinal);
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
        Assert.True(response.Headers.CacheControl?.NoCache);
        Assert.NotNull(response.Headers.ETag);
    }

    [Fact]
    public async Task App_WithoutTrailingSlash_RedirectsToTheDirectory()
    {
        await using var factory = Server("Production", "true");
        using var client = factory.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false });

        using var response = await client.GetAsync("/app?x=1", Ct);

        Assert.Equal(HttpStatusCode.MovedPermanently, response.StatusCode);
        Assert.Equal("/app/?x=1", response.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task Assets_AreImmutableGzippedOnRequestAndAnswer304ToTheirETag()
    {
        await using var factory = Server("Production", "true");
        using var client = factory.Anonymous();
        var html = await client.GetStringAsync("/app/", Ct);
        var script = System.Text.RegularExpressions.Regex.Match(html, "src=\"\\./(assets/[^\"]+\\.js)\"").Groups[1].Value;
        Assert.NotEmpty(script);

        using var plain = await client.GetAsync($"/app/{script}", Ct);
        var bytes = await plain.Content.ReadAsByteArrayAsync(Ct);
        using var gzipRequest = new HttpRequestMessage(HttpMethod.Get, $"/app/{script}");
        gzipRequest.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("gzip"));
        using var gzipped = await client.SendAsync(gzipRequest, Ct);
        using var conditional = new HttpRequestMessage(HttpMethod.Get, $"/app/{script}");
        conditional.Headers.IfNoneMatch.Add(plain.Headers.ETag!);
        using var notModified = await client.SendAsync(conditional, Ct);

        Assert.Equal("text/javascript", plain.Content.Headers.ContentType?.MediaType);
        Assert.Equal(TimeSpan.FromDays(365), plain.Headers.CacheControl?.MaxAge);
        Assert.Contains("immutable", plain.Headers.CacheControl?.ToString(), StringComparison.Ordinal);
        Assert.Contains("gzip", gzipped.Content.Headers.ContentEncoding);
        Assert.True(gzipped.Content.Headers.ContentLength < bytes.Length);
        await using (var unzip = new System.IO.Compression.GZipStream(await gzipped.Content.ReadAsStreamAsync(Ct), System.IO.Compression.CompressionMode.Decompress))
        using (var copy = new MemoryStream())
        {
            await unzip.CopyToAsync(copy, Ct);
            Assert.Equal(bytes, copy.ToArray());
        }

        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
    }

    [Fact]
    public async Task Head_AnswersHeadersWithoutABody()
    {
        await using var factory = Server("Production", "true");
        using var client = factory.Anonymous();

        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/app/index.html"), Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Content.Headers.ContentLength > 0);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync(Ct));
    }

    [Theory]
    [InlineData("/app/nope.js")]
    [InlineData("/app/assets/../../appsettings.json")]
    public async Task UnknownFile_Is404ProblemDetails(string path)
    {
        await using var factory = Server("Production", "true");
        using var client = factory.Anonymous();

        using var response = await client.GetAsync(path, Ct);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not_found", (await ParleyApi.ReadAsync<JsonElement>(response, HttpStatusCode.NotFound)).GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("Development", true, null, "development")]
    [InlineData("Development", false, null, "jwt")]
    [InlineData("Production", false, null, "jwt")]
    [InlineData("Production", false, "Header", "gateway")]
    public async Task Settings_SayHowTheAppSignsIn(string environment, bool developmentKey, string? authMode, string expected)
    {
        await using var factory = Server(environment, "true", developmentKey, authMode);
        using var client = factory.Anonymous();

        using var response = await client.GetAsync("/app/settings.json", Ct);

        var settings = await ParleyApi.ReadAsync<JsonElement>(response);
        Assert.Equal(expected, settings.GetProperty("sign_in").GetString());
        Assert.True(response.Headers.CacheControl?.NoStore);
    }

    [Fact]
    public async Task Token_WithTheDevelopmentKey_IsATokenTheServerAccepts()
    {
        await using var factory = Server("Development", developmentKey: true);
        using var client = factory.Anonymous();

        using var minted = await client.PostAsJsonAsync("/app/token", new { user_id = "alice" }, Ct);
        var body = await ParleyApi.ReadAsync<JsonElement>(minted);
        using var api = factory.Anonymous();
        api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", body.GetProperty("token").GetString());
        using var conversations = await api.GetAsync("/api/v1/conversations", Ct);

        Assert.Equal("alice", body.GetProperty("user_id").GetString());
        var expires = body.GetProperty("expires_at").GetDateTimeOffset();
        Assert.InRange(expires - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(55), TimeSpan.FromMinutes(61));
        Assert.Equal(HttpStatusCode.OK, conversations.StatusCode);
    }

    [Theory]
    [InlineData("")]
    [InlineData("two words")]
    [InlineData("system")]
    public async Task Token_ForAnInvalidOrReservedUserId_Is400ValidationFailed(string userId)
    {
        await using var factory = Server("Development", developmentKey: true);
        using var client = factory.Anonymous();

        using var response = await client.PostAsJsonAsync("/app/token", new { user_id = userId }, Ct);

        var problem = await ParleyApi.ReadAsync<JsonElement>(response, HttpStatusCode.BadRequest);
        Assert.Equal("validation_failed", problem.GetProperty("code").GetString());
        Assert.True(problem.GetProperty("errors").TryGetProperty("user_id", out _));
    }

    [Fact]
    public async Task Token_WithAConfiguredKey_IsNotOffered()
    {
        // A server that signs with a key of its own never mints tokens for anyone: only the public development key does.
        // The path is then one of the app's files, which are only read.
        await using var factory = Server("Development", "true");
        using var client = factory.Anonymous();

        using var response = await client.PostAsJsonAsync("/app/token", new { user_id = "alice" }, Ct);

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.DoesNotContain("token", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task App_IsNotInTheOpenApiDocument()
    {
        await using var factory = Server("Development", developmentKey: true);
        using var client = factory.Anonymous();

        var document = await client.GetStringAsync("/openapi/v1.json", Ct);

        Assert.DoesNotContain("/app", document, StringComparison.Ordinal);
    }

    [Fact]
    public void Bundle_IsEmbeddedWithAnIndexAndItsAssets()
    {
        var files = new WebAppFiles().All;

        Assert.Contains("index.html", files.Keys);
        Assert.Contains(files.Keys, k => k.StartsWith("assets/", StringComparison.Ordinal) && k.EndsWith(".js", StringComparison.Ordinal));
        Assert.All(files.Values.Where(f => f.Path.StartsWith("assets/", StringComparison.Ordinal)), f => Assert.True(f.Immutable));
        Assert.False(files["index.html"].Immutable);
    }
}

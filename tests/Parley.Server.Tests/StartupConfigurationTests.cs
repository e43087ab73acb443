using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Parley.Server.App;
using Parley.Server.Protocol;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>Start-up validation of the authentication configuration, and the <c>token</c> command that mints development tokens.</summary>
public sealed partial class StartupConfigurationTests : IAsyncLifetime
{
    // Console is process-wide: the token command's output is captured under this lock (tests of this class only touch it).

    private readonly ParleyFactory _factory = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Production_JwtModeWithoutKeyOrAuthority_ExitsWith1AndAClearMessage()
    {
        // Program catches the OptionsValidationException to print it, so this runs the real server process.
        var (exitCode, error) = await RunServerAsync("Production", "--Auth:Mode=Jwt");

        Assert.Equal(1, exitCode);
        // The operator reads stderr: the reason and the fix, not a stack trace (the host's JSON log on stdout has that).
        Assert.StartsWith("Parley cannot start: invalid configuration.", error, StringComparison.Ordinal);
        Assert.Contains(
            "  - Auth:Mode is Jwt but neither Auth:Jwt:SigningKey (HS256) nor Auth:Jwt:Authority (OpenID Connect) is configured.", error,
            StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")] // blank is unset where the keys are built: the audience would go unchecked
    public async Task Production_AuthorityWithoutAudience_ExitsWith1AndAClearMessage(string audience)
    {
        var (exitCode, error) = await RunServerAsync(
            "Production", "--Auth:Jwt:Authority=https://idp.example/realms/app", $"--Auth:Jwt:Audience={audience}");

        Assert.Equal(1, exitCode);
        Assert.Contains("  - Auth:Jwt:Audience is required with Auth:Jwt:Authority.", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Production_SigningKeyTooShort_ExitsWith1AndAClearMessage()
    {
        var (exitCode, error) = await RunServerAsync("Production", "--Auth:Jwt:SigningKey=short-key");

        Assert.Equal(1, exitCode);
        Assert.Contains("  - Auth:Jwt:SigningKey must be at least 32 bytes", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--Fanout:Provider=Redis", "  - Fanout:Provider is Redis but ConnectionStrings:Redis is not set")]
    [InlineData("--Fanout:Provider=Carrier-pigeon", "Fanout:Provider")]
    [InlineData("--Fanout:Redis:OrderHold=00:05:00", "OrderHold")]
    public async Task FanoutMisconfigured_ExitsWith1AndSaysWhich(string setting, string expected)
    {
        var (exitCode, error) = await RunServerAsync("Development", setting);

        Assert.Equal(1, exitCode);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Jwt")]
    [InlineData("Header")]
    public async Task Production_WithKeyOrInHeaderMode_Starts(string mode)
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["environment"] = "Production";
            s["Auth:Mode"] = mode;
            if (mode == "Header")
            {
                s.Remove("Auth:Jwt:SigningKey");
            }
        });
        using var client = factory.CreateClient();
        client.DefaultRequestHeaders.Add("X-User-ID", "alice");
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ParleyFactory.Token("alice"));

        using var response = await client.GetAsync("/api/v1/conversations", Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task TokenCommand_WithTheServersKey_PrintsATokenTheServerAccepts()
    {
        var alice = NewUser("alice");

        var run = await RunTokenCommandAsync(["token", alice, "--device", "phone", .. ServerKeyArguments()]);

        Assert.True(run.Handled);
        Assert.Equal(0, run.ExitCode);
        using var api = new ParleyApi(_factory.Anonymous());
        api.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", run.Token);
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        Assert.Equal(alice, conversation.CreatedBy);
        var (socket, connected) = await Handshake.ConnectAsync(_factory.WebSocketUri($"access_token={run.Token}"));
        await Handshake.CloseAsync(socket);
        Assert.Equal(alice, connected.GetProperty("user_id").GetString());
        Assert.Equal("phone", connected.GetProperty("device_id").GetString());
    }

    [Fact]
    public async Task TokenCommand_Service_PrintsATokenWithTheServiceRole()
    {
        var (backend, alice) = (NewUser("backend"), NewUser("alice"));

        var run = await RunTokenCommandAsync(["token", backend, "--service", .. ServerKeyArguments()]);

        using var api = new ParleyApi(_factory.Anonymous());
        api.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", run.Token);
        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { alice }, owner_id = alice });
        var group = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal(new Dictionary<string, string> { [alice] = "owner" }, RolesOf(group));
    }

    [Fact]
    public async Task TokenCommand_WithAnotherKey_PrintsATokenTheServerRejects()
    {
        var run = await RunTokenCommandAsync(
            "token", "alice", "--Auth:Jwt:SigningKey=another-signing-key-0123456789abcdef-xyz", $"--Auth:Jwt:Issuer={ParleyFactory.Issuer}",
            $"--Auth:Jwt:Audience={ParleyFactory.Audience}");

        using var client = _factory.Anonymous();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", run.Token);
        using var response = await client.GetAsync("/api/v1/conversations", Ct);
        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
    }

    [Fact]
    public async Task TokenCommand_InDevelopment_SignsWithTheDevelopmentKeyADevelopmentServerAccepts()
    {
        await using var development = new ParleyFactory(s =>
        {
            s["environment"] = "Development";
            // Empty values (as an environment file's "Auth__Jwt__Audience=" gives) mean "not configured".
            s["Auth:Jwt:SigningKey"] = "";
            s["Auth:Jwt:Issuer"] = "";
            s["Auth:Jwt:Audience"] = "";
        });
        var alice = NewUser("alice");

        var run = await RunTokenCommandAsync("token", alice, "--environment", "Development");

        using var client = development.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", run.Token);
        using var response = await client.GetAsync("/api/v1/conversations", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The development key is not this test server's key.
        using var testServer = _factory.Anonymous();
        testServer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", run.Token);
        using var rejected = await testServer.GetAsync("/api/v1/conversations", Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, rejected.StatusCode);
    }

    [Fact]
    public async Task TokenCommand_InProductionWithoutKey_ExitsWith1AndSaysWhy()
    {
        var run = await RunTokenCommandAsync("token", "alice", "--environment", "Production");

        Assert.True(run.Handled);
        Assert.Equal(1, run.ExitCode);
        Assert.Null(run.Token);
        Assert.Contains("Auth:Jwt:SigningKey", run.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("token")]
    [InlineData("token", "alice smith")]
    [InlineData("token", "--service")]
    [InlineData("token", "alice", "--hours", "0")]
    [InlineData("token", "alice", "--hours", "NaN")]
    [InlineData("token", "alice", "--hours", "1e9")]
    public async Task TokenCommand_BadArguments_ExitsWith2AndPrintsUsage(params string[] args)
    {
        var run = await RunTokenCommandAsync(args);

        Assert.True(run.Handled);
        Assert.Equal(2, run.ExitCode);
        Assert.Null(run.Token);
        Assert.Contains("usage: token <user-id>", run.Error, StringComparison.Ordinal);
    }

    private static string[] ServerKeyArguments() =>
    [
        $"--Auth:Jwt:SigningKey={ParleyFactory.SigningKey}", $"--Auth:Jwt:Issuer={ParleyFactory.Issuer}", $"--Auth:Jwt:Audience={ParleyFactory.Audience}",
    ];

    /// <summary>
    /// Runs the built server in <paramref name="environment"/> with no key configured, on port 0 and a private
    /// database (should it start after all, it disturbs nobody), and returns its exit code and standard error.
    /// </summary>
    private static async Task<(int ExitCode, string Error)> RunServerAsync(string environment, params string[] arguments)
    {
        var directory = Directory.CreateTempSubdirectory("parley-startup-");
        try
        {
            var run = await ServerCommand.RunAsync(directory.FullName, environment, ["--urls", "http://127.0.0.1:0", .. arguments]);
            return (run.ExitCode, run.Error);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static async Task<TokenRun> RunTokenCommandAsync(params string[] args)
    {
        var (exitCode, output, error) = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(args));
        var handled = exitCode is not null;
        // Other test classes may log to the console meanwhile: the token is the one line shaped like a JWT.
        var token = JwtLine().Match(output).Value;
        return new TokenRun(handled, exitCode ?? 0, token.Length == 0 ? null : token, error);
    }

    [GeneratedRegex(@"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", RegexOptions.Multiline)]
    private static partial Regex JwtLine();

    private sealed record TokenRun(bool Handled, int ExitCode, string? Token, string Error);
}

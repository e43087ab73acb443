using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Hosting;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// The server's log never carries a bearer token. Reproduction: with the shipped appsettings.json every
/// <c>/ws?access_token=eyJ…</c> connection wrote the whole token into the host's "Request starting/finished" lines.
/// Every category is logged down to Trace here, so any other line that printed the URL would be caught too.
/// </summary>
public sealed class RequestLogTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly LogCapture _log = new();
    private readonly ParleyFactory _factory;

    public RequestLogTests()
    {
        _factory = new ParleyFactory(
            s =>
            {
                s["Logging:LogLevel:Default"] = "Trace";
                s["Logging:LogLevel:Microsoft"] = "Trace";
                s["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace";
                s["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Information";
            },
            services: services => services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(_log));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task WebSocketWithAccessToken_RequestLinesAreLogged_WithoutTheToken()
    {
        var alice = NewUser("alice");
        var token = ParleyFactory.Token(alice);

        var (socket, _) = await Handshake.ConnectAsync(_factory.WebSocketUri($"access_token={token}&device_id=phone-1"));
        await Handshake.CloseAsync(socket);

        // The request lines are still there, with the other parameters readable and the token's value replaced.
        var started = await _log.WaitForAsync(e => e.Message.StartsWith("Request starting", StringComparison.Ordinal) && e.Message.Contains("/ws?", StringComparison.Ordinal), Bound);
        var finished = await _log.WaitForAsync(e => e.Message.StartsWith("Request finished", StringComparison.Ordinal) && e.Message.Contains("/ws?", StringComparison.Ordinal), Bound);
        Assert.Contains("/ws?access_token=[redacted]&device_id=phone-1", started.Message, StringComparison.Ordinal);
        Assert.Contains("/ws?access_token=[redacted]&device_id=phone-1", finished.Message, StringComparison.Ordinal);
        Assert.Contains(" 101 ", finished.Message, StringComparison.Ordinal);
        AssertNowhereInTheLog(token);
    }

    [Fact]
    public async Task RestRequestWithAccessToken_IsLogged_WithoutTheToken()
    {
        var token = ParleyFactory.Token(NewUser("alice"));
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync($"/api/v1/conversations?limit=5&Access_Token={token}", Ct);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var finished = await _log.WaitForAsync(e => e.Message.StartsWith("Request finished", StringComparison.Ordinal) && e.Message.Contains("/api/v1/conversations?", StringComparison.Ordinal), Bound);
        Assert.Contains("?limit=5&Access_Token=[redacted]", finished.Message, StringComparison.Ordinal);
        AssertNowhereInTheLog(token);
    }

    [Theory]
    [InlineData("?access_token=abc", "?access_token=[redacted]")]
    [InlineData("GET http://h/ws?cursor=c1&access_token=eyJ.x-y_z&device_id=d HTTP/1.1", "GET http://h/ws?cursor=c1&access_token=[redacted]&device_id=d HTTP/1.1")]
    [InlineData("?ACCESS_TOKEN=abc#f", "?ACCESS_TOKEN=[redacted]#f")]
    [InlineData("?access%5Ftoken=abc&access_token=def", "?access%5Ftoken=[redacted]&access_token=[redacted]")]
    [InlineData("'/ws?access_token=abc'", "'/ws?access_token=[redacted]'")]
    [InlineData("/ws??access_token=abc", "/ws??access_token=[redacted]")]
    [InlineData("?access_tokens=abc&my_access_token=def", "?access_tokens=abc&my_access_token=def")]
    [InlineData("no query here = at all", "no query here = at all")]
    public void Redact_ReplacesOnlyTheAccessTokenValue(string text, string expected) =>
        Assert.Equal(expected, LogRedaction.Redact(text));

    private void AssertNowhereInTheLog(string token)
    {
        var leaks = _log.Entries.Where(e => e.Everything.Contains(token, StringComparison.Ordinal)).Select(e => $"{e.Category}: {e.Message}").ToList();
        Assert.True(leaks.Count == 0, "the token was logged:\n" + string.Join('\n', leaks));
        Assert.Contains(_log.Entries, e => e.Everything.Contains("access_token=[redacted]", StringComparison.OrdinalIgnoreCase));
    }
}

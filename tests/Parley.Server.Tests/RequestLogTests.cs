using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
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
    private readonly ConcurrentDictionary<string, int> _loggersCreated = new(StringComparer.Ordinal);
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
            services: services =>
            {
                services.AddSingleton<ILoggerProvider>(_log);
                // The server's own (redacting) factory, behind one that counts the loggers asked of it.
                var server = services.Last(d => d.ServiceType == typeof(ILoggerFactory)).ImplementationFactory!;
                services.Replace(ServiceDescriptor.Singleton<ILoggerFactory>(
                    provider => new CountingLoggerFactory((ILoggerFactory)server(provider), _loggersCreated)));
            });
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task WebSocketWithAccessToken_TakenDirectly_TheTokenIsNowhereInTheLog()
    {
        var alice = NewUser("alice");
        var token = ParleyFactory.Token(alice);

        var (socket, connected) = await Handshake.ConnectAsync(_factory.WebSocketUri($"access_token={token}&device_id=phone-1"));
        await Handshake.CloseAsync(socket);

        // Below the pipeline there are no request lines; the connection's own lines name the user and device.
        var id = connected.GetProperty("connection_id").GetString()!;
        await _log.WaitForAsync(e => e.Message.Contains($"Connection {id} closed", StringComparison.Ordinal), Bound);
        var opened = await _log.WaitForAsync(e => e.Message.Contains($"Connection {id} opened", StringComparison.Ordinal), Bound);
        Assert.Contains("phone-1", opened.Message, StringComparison.Ordinal);
        AssertNowhereInTheLog(token, urlLogged: false);
    }

    [Fact]
    public async Task WebSocketWithAccessToken_ThroughThePipeline_RequestLinesAreLogged_WithoutTheToken()
    {
        var alice = NewUser("alice");
        var token = ParleyFactory.Token(alice);
        await using var pipeline = new ParleyFactory(
            s =>
            {
                s["Realtime:DirectUpgrade"] = "false";
                s["Logging:LogLevel:Default"] = "Trace";
                s["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Information";
            },
            services: services => services.AddSingleton<ILoggerProvider>(_log));
        pipeline.StartKestrel();

        var (socket, _) = await Handshake.ConnectAsync(pipeline.WebSocketUri($"access_token={token}&device_id=phone-1"));
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

    [Fact]
    public async Task AuthenticatedRequests_LogInAScopeWithTheUserId_ThroughOneLoggerForAllOfThem()
    {
        // Reproduction: the middleware that opens the scope asked the logger factory for its logger on every request.
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);

        for (var i = 0; i < 3; i++)
        {
            await api.ListConversationsAsync();
        }

        await _log.WaitForAsync(
            e => e.Message.StartsWith("Executing endpoint", StringComparison.Ordinal) && e.Everything.Contains($"UserId={alice}\n", StringComparison.Ordinal),
            Bound);
        Assert.Equal(1, _loggersCreated.GetValueOrDefault("Parley.Requests"));
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

    [Theory]
    [InlineData("GET http://h/ws?cursor=c1&device_id=d HTTP/1.1")]
    [InlineData("/ws?access+token=abc&token=x")]
    public void Redact_QueryWithoutTheParameter_IsTheSameString(string text) =>
        Assert.Same(text, LogRedaction.Redact(text));

    private sealed class CountingLoggerFactory(ILoggerFactory inner, ConcurrentDictionary<string, int> created) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName)
        {
            created.AddOrUpdate(categoryName, 1, (_, count) => count + 1);
            return inner.CreateLogger(categoryName);
        }

        public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

        public void Dispose() => inner.Dispose();
    }

    /// <param name="token">The token that must appear in no line.</param>
    /// <param name="urlLogged">Whether a line logged the URL (redacted), which shows that the search could have found the token.</param>
    private void AssertNowhereInTheLog(string token, bool urlLogged = true)
    {
        var leaks = _log.Entries.Where(e => e.Everything.Contains(token, StringComparison.Ordinal)).Select(e => $"{e.Category}: {e.Message}").ToList();
        Assert.True(leaks.Count == 0, "the token was logged:\n" + string.Join('\n', leaks));
        if (urlLogged)
        {
            Assert.Contains(_log.Entries, e => e.Everything.Contains("access_token=[redacted]", StringComparison.OrdinalIgnoreCase));
        }
    }
}

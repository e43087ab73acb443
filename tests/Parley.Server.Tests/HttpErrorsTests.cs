using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// Cross-cutting HTTP behaviour on real Kestrel (the in-memory TestServer does not enforce Kestrel's body limit):
/// every error is ProblemDetails with a code, whatever produced it (except what Kestrel refuses before the app: an
/// empty body, as documented); body size, send rate and CORS limits.
/// </summary>
public sealed class HttpErrorsTests : IAsyncLifetime
{
    private const int MaxRequestBytes = 2048;
    private const string AllowedOrigin = "https://app.example.com";

    private readonly ParleyFactory _factory = new(s =>
    {
        s["Limits:MaxRequestBytes"] = MaxRequestBytes.ToString(CultureInfo.InvariantCulture);
        s["Limits:SendBurst"] = "3";
        s["Limits:SendRatePerSecond"] = "1";
        s["Cors:AllowedOrigins:0"] = AllowedOrigin;
    });

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Theory]
    [InlineData("/api/v1/nothing-here")]
    [InlineData("/api/v2/messages")]
    [InlineData("/nothing-here")]
    [InlineData("/api/v1/conversations/0195f8a2-6a4b-7c3d-9e8f-001122334455/nothing")]
    public async Task UnknownRoute_Returns404ProblemWithCode(string path)
    {
        using var api = _factory.Api(NewUser("alice"));
        using var anonymous = _factory.Anonymous();

        using var authenticated = await api.GetAsync(path);
        using var withoutCredentials = await anonymous.GetAsync(path, Ct);

        await ParleyApi.ProblemAsync(authenticated, HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(withoutCredentials, HttpStatusCode.NotFound, "not_found");
    }

    [Theory]
    [InlineData("PUT", "/api/v1/conversations", "GET, HEAD, POST")]
    [InlineData("DELETE", "/api/v1/messages", "POST")]
    [InlineData("POST", "/api/v1/messages/0195f8a2-6a4b-7c3d-9e8f-001122334455/edits", "GET, HEAD")]
    [InlineData("POST", "/api/v1/config", "GET, HEAD")]
    public async Task WrongMethod_Returns405WithAllow(string method, string path, string allow)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.SendAsync(new HttpMethod(method), path, "{}");

        await ParleyApi.ProblemAsync(response, HttpStatusCode.MethodNotAllowed, "method_not_allowed");
        Assert.Equal(allow, string.Join(", ", response.Content.Headers.Allow));
    }

    [Fact]
    public async Task Head_OnEveryRead_AnswersAsGetWithoutABody()
    {
        // Minimal APIs map GET alone: HEAD, which monitors and caches use to check a URL, was 405 on every read.
        var alice = NewUser("alice");
        var bob = NewUser("bob");
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(bob);
        var message = await api.SendTextAsync(conversation.Id, "hello");
        var cursor = (await ParleyApi.ReadAsync<System.Text.Json.JsonElement>(await api.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString();
        string[] reads =
        [
            "/api/v1/conversations", $"/api/v1/conversations/{conversation.Id}", $"/api/v1/conversations/{conversation.Id}/messages",
            $"/api/v1/messages/{message.Id}", $"/api/v1/messages/{message.Id}/edits", "/api/v1/sync/cursor", $"/api/v1/sync?cursor={Uri.EscapeDataString(cursor!)}",
            $"/api/v1/users/{bob}/presence", "/api/v1/config",
        ];

        foreach (var path in reads)
        {
            using var get = await api.GetAsync(path);
            using var head = await api.SendAsync(HttpMethod.Head, path, body: null);

            Assert.True(get.StatusCode == HttpStatusCode.OK, $"GET {path}: {get.StatusCode}");
            Assert.True(head.StatusCode == HttpStatusCode.OK, $"HEAD {path}: {head.StatusCode}");
            Assert.Equal(get.Content.Headers.ContentType?.MediaType, head.Content.Headers.ContentType?.MediaType);
            Assert.Empty(await head.Content.ReadAsByteArrayAsync(Ct));
        }

        // On the wire: the headers, then nothing, and the connection stays usable.
        var token = ParleyFactory.Token(alice);
        var wire = await RawExchangeAsync(
            $"HEAD /api/v1/messages/{message.Id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n" +
            $"GET /api/v1/messages/{message.Id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        var second = wire.IndexOf("HTTP/1.1 200", 1, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 200", wire, StringComparison.Ordinal);
        Assert.True(second > 0, wire);
        Assert.EndsWith("\r\n\r\n", wire[..second], StringComparison.Ordinal);
        Assert.DoesNotContain("hello", wire[..second], StringComparison.Ordinal);
        Assert.Contains("hello", wire[second..], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Head_AnswersTheErrorsGetAnswers()
    {
        using var api = _factory.Api(NewUser("alice"));
        using var stranger = _factory.Api(NewUser("mallory"));
        using var anonymous = _factory.Anonymous();
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var path = $"/api/v1/conversations/{conversation.Id}";
        (HttpClient Client, string Path, HttpStatusCode Status)[] cases =
        [
            (stranger.Http, path, HttpStatusCode.NotFound),
            (anonymous, path, HttpStatusCode.Unauthorized),
            (api.Http, "/api/v1/conversations/not-an-id", HttpStatusCode.BadRequest),
            (api.Http, "/api/v1/conversations?limit=0", HttpStatusCode.BadRequest),
        ];

        foreach (var (client, target, status) in cases)
        {
            using var get = await client.GetAsync(target, Ct);
            using var head = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, target), Ct);

            Assert.True(get.StatusCode == status, $"GET {target}: {get.StatusCode}");
            Assert.True(head.StatusCode == status, $"HEAD {target}: {head.StatusCode}");
            Assert.Empty(await head.Content.ReadAsByteArrayAsync(Ct));
        }
    }

    private async Task<string> RawExchangeAsync(string requests)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(_factory.BaseAddress.Host, _factory.BaseAddress.Port, Ct);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(requests), Ct);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadToEndAsync(Ct);
    }

    [Theory]
    [InlineData("POST", "/api/v1/messages", "text/plain")]
    [InlineData("POST", "/api/v1/conversations", "application/x-www-form-urlencoded")]
    [InlineData("POST", "/api/v1/conversations", "application/xml")]
    [InlineData("PUT", "/api/v1/messages/0195f8a2-6a4b-7c3d-9e8f-001122334455", "text/plain")]
    [InlineData("PATCH", "/api/v1/conversations/0195f8a2-6a4b-7c3d-9e8f-001122334455/participants/bob", "text/plain")]
    public async Task WrongContentType_Returns415(string method, string path, string contentType)
    {
        using var api = _factory.Api(NewUser("alice"));
        using var request = new HttpRequestMessage(new HttpMethod(method), path)
        {
            Content = new StringContent("""{"type":"direct","participant_ids":["bob"]}""", Encoding.UTF8, contentType),
        };

        using var response = await api.Http.SendAsync(request, Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
    }

    [Theory]
    [InlineData("POST", "/api/v1/conversations", "windows-1252")]
    [InlineData("POST", "/api/v1/messages", "x-foo")]
    [InlineData("PUT", "/api/v1/messages/0195f8a2-6a4b-7c3d-9e8f-001122334455", "\"x-foo\"")]
    public async Task JsonBodyInACharsetThatCannotBeRead_Returns415NamingIt_Not500(string method, string path, string charset)
    {
        using var api = _factory.Api(NewUser("alice"));
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes("""{"type":"direct","participant_ids":["bob"]}"""));
        Assert.True(content.Headers.TryAddWithoutValidation("Content-Type", $"application/json; charset={charset}"));
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content };

        using var response = await api.Http.SendAsync(request, Ct);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
        Assert.Contains(charset, problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BodyWithoutContentType_Returns415()
    {
        using var api = _factory.Api(NewUser("alice"));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/conversations")
        {
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes("""{"type":"direct","participant_ids":["bob"]}""")),
        };

        using var response = await api.Http.SendAsync(request, Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BodyOverMaxRequestBytes_Returns413PayloadTooLarge(bool contentLengthKnown)
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var body = $$"""{"conversation_id":"{{conversation.Id}}","message_type":"text","content":"{{new string('x', MaxRequestBytes)}}"}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/messages")
        {
            Content = contentLengthKnown ? new StringContent(body, Encoding.UTF8, "application/json") : new ChunkedJsonContent(body),
        };

        using var response = await api.Http.SendAsync(request, Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task BodyJustUnderMaxRequestBytes_IsRead()
    {
        using var api = _factory.Api(NewUser("alice"));
        // A 129-character name is invalid: the answer shows the body was read and judged, not refused for its size.
        const string prefix = """{"type":"group","participant_ids":[],"name":""" + "\"";
        const string suffix = "\"}";
        var body = prefix + new string('n', MaxRequestBytes - prefix.Length - suffix.Length) + suffix;
        Assert.Equal(MaxRequestBytes, Encoding.UTF8.GetByteCount(body));

        using var response = await api.PostAsync("/api/v1/conversations", body);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["name"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("content")]
    [InlineData("Content")]
    public async Task Body_APropertyGivenTwice_Returns400AndStoresNothing(string second)
    {
        // Read case-insensitively, "content" and "Content" are one property: a filter in front of Parley that read the
        // first copy would have let through whatever the second said, which Parley stored.
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        using var response = await api.PostAsync(
            "/api/v1/messages", $$"""{"conversation_id": "{{conversation.Id}}", "content": "hello", "{{second}}": "something else"}""");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("more than once", problem.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("Parley.", problem.Detail, StringComparison.Ordinal);
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Body_AValueOfTheWrongType_Returns400NamingTheValueNotADotNetType()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.PostAsync("/api/v1/conversations", """{"type": "group", "name": "g", "participant_ids": 7}""");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("$.participant_ids has the wrong type", problem.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendRate_EditsTakeFromTheSameBudget()
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var message = await api.SendTextAsync(conversation.Id, "v0");

        // A burst of 3, one taken by the send: of 6 simultaneous edits 2 pass (3 should a token arrive meanwhile).
        var edits = await Task.WhenAll(Enumerable.Range(1, 6).Select(i => api.PutAsync($"/api/v1/messages/{message.Id}", new { content = $"v{i}" })));
        try
        {
            Assert.InRange(edits.Count(r => r.StatusCode == HttpStatusCode.OK), 2, 3);
            foreach (var limited in edits.Where(r => r.StatusCode != HttpStatusCode.OK))
            {
                await ParleyApi.ProblemAsync(limited, HttpStatusCode.TooManyRequests, "rate_limited");
            }
        }
        finally
        {
            foreach (var response in edits)
            {
                response.Dispose();
            }
        }
    }

    [Fact]
    public async Task SendRate_BurstExhausted_Returns429RateLimitedWithRetryAfterAndRecovers()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);
        var conversation = await aliceApi.CreateDirectAsync(bob);

        var responses = await SendBurstAsync(aliceApi, conversation.Id, 8);
        try
        {
            // A burst of 3, refilled at 1 per second: 3 of 8 simultaneous sends pass (4 should a token arrive meanwhile).
            Assert.InRange(responses.Count(r => r.StatusCode == HttpStatusCode.Created), 3, 4);
            var limited = responses.Where(r => r.StatusCode != HttpStatusCode.Created).ToList();
            Assert.InRange(limited.Count, 4, 5);
            foreach (var response in limited)
            {
                await ParleyApi.ProblemAsync(response, HttpStatusCode.TooManyRequests, "rate_limited");
                Assert.InRange(response.Headers.RetryAfter?.Delta ?? TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2));
            }

            Assert.Equal(responses.Count(r => r.StatusCode == HttpStatusCode.Created), (await aliceApi.ListMessagesAsync(conversation.Id)).Messages.Count);

            // The limit is per user: bob still sends.
            await bobApi.SendTextAsync(conversation.Id, "bob is not limited");

            await Task.Delay(limited[0].Headers.RetryAfter!.Delta!.Value + TimeSpan.FromMilliseconds(200), Ct);
            await aliceApi.SendTextAsync(conversation.Id, "after waiting");
        }
        finally
        {
            foreach (var response in responses)
            {
                response.Dispose();
            }
        }
    }

    [Fact]
    public async Task SendRate_OnlySendsCountAgainstIt()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(bob);

        for (var i = 0; i < 10; i++)
        {
            await api.ListConversationsAsync();
            await api.ListMessagesAsync(conversation.Id);
        }

        await api.SendTextAsync(conversation.Id, "reads did not use up the send burst");
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("text/html")]
    [InlineData("application/xml")]
    public async Task Error_ForAClientThatDoesNotAskForJson_IsStillProblemDetails(string accept)
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        api.Http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue(accept));
        using var anonymous = _factory.Anonymous();
        anonymous.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue(accept));

        using var unauthenticated = await anonymous.GetAsync("/api/v1/conversations", Ct);
        using var unknownRoute = await api.GetAsync("/api/v1/nothing-here");
        using var wrongMethod = await api.SendAsync(HttpMethod.Put, "/api/v1/conversations", "{}");
        using var malformed = await api.PostAsync("/api/v1/conversations", "{");
        using var notFound = await api.GetAsync($"/api/v1/conversations/{Guid.CreateVersion7()}");
        using var wrongType = await api.Http.PostAsync("/api/v1/conversations", new StringContent("{}", Encoding.UTF8, "text/plain"), Ct);
        using var tooLarge = await api.PostAsync("/api/v1/conversations", $$"""{"name":"{{new string('n', MaxRequestBytes)}}"}""");
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var burst = await SendBurstAsync(api, conversation.Id, 8);
        try
        {
            await ParleyApi.ProblemAsync(unauthenticated, HttpStatusCode.Unauthorized, "unauthenticated");
            await ParleyApi.ProblemAsync(unknownRoute, HttpStatusCode.NotFound, "not_found");
            await ParleyApi.ProblemAsync(wrongMethod, HttpStatusCode.MethodNotAllowed, "method_not_allowed");
            await ParleyApi.ProblemAsync(malformed, HttpStatusCode.BadRequest, "invalid_request");
            await ParleyApi.ProblemAsync(notFound, HttpStatusCode.NotFound, "not_found");
            await ParleyApi.ProblemAsync(wrongType, HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
            await ParleyApi.ProblemAsync(tooLarge, HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
            var limited = burst.FirstOrDefault(r => r.StatusCode != HttpStatusCode.Created);
            Assert.NotNull(limited);
            await ParleyApi.ProblemAsync(limited, HttpStatusCode.TooManyRequests, "rate_limited");
        }
        finally
        {
            foreach (var response in burst)
            {
                response.Dispose();
            }
        }
    }

    [Fact]
    public async Task Problem_CarriesTheRequestIdForTheLogs()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.GetAsync($"/api/v1/conversations/{Guid.CreateVersion7()}");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
        Assert.False(string.IsNullOrEmpty(problem.Body.GetProperty("request_id").GetString()));
        Assert.False(string.IsNullOrEmpty(problem.Body.GetProperty("trace_id").GetString()));
    }

    [Fact]
    public async Task Cors_ConfiguredOrigin_IsAllowedAndOthersAreNot()
    {
        using var client = _factory.Anonymous();

        using var allowed = await PreflightAsync(client, AllowedOrigin);
        using var other = await PreflightAsync(client, "https://evil.example.com");

        Assert.Equal(AllowedOrigin, allowed.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
    }

    public static TheoryData<string, string, int> RejectedByKestrel => new()
    {
        { "a 20 KB request line", $"GET /api/v1/conversations?q={new string('a', 20_000)} HTTP/1.1\r\nHost: localhost\r\n\r\n", 414 },
        { "a 40 KB header", $"GET /api/v1/conversations HTTP/1.1\r\nHost: localhost\r\nX-Big: {new string('a', 40_000)}\r\n\r\n", 431 },
        { "a Content-Length that is not a number", "POST /api/v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ten\r\n\r\n{}", 400 },
        { "HTTP/9.9", "GET /api/v1/conversations HTTP/9.9\r\nHost: localhost\r\n\r\n", 505 },
    };

    /// <summary>
    /// Kestrel refuses these while reading the request line and headers, before any middleware runs: the status comes
    /// with an empty body, not ProblemDetails, as docs/errors.md says.
    /// </summary>
    [Theory]
    [MemberData(nameof(RejectedByKestrel))]
    public async Task RequestRejectedBeforeTheApp_HasTheStatusAndAnEmptyBody(string why, string request, int status)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        await tcp.ConnectAsync(_factory.BaseAddress.Host, _factory.BaseAddress.Port, timeout.Token);
        var stream = tcp.GetStream();

        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), timeout.Token);
        // Kestrel closes the connection after such a response: read to the end.
        using var received = new MemoryStream();
        await stream.CopyToAsync(received, timeout.Token);

        var response = Encoding.ASCII.GetString(received.ToArray());
        var headerEnd = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(headerEnd > 0, $"{why}: no complete response: {response}");
        var head = response[..headerEnd].Split("\r\n");
        Assert.StartsWith($"HTTP/1.1 {status} ", head[0], StringComparison.Ordinal);
        Assert.Contains("Content-Length: 0", head);
        Assert.Equal(string.Empty, response[(headerEnd + 4)..]);
    }

    /// <summary>Sends <paramref name="count"/> text messages at once (the caller disposes the responses).</summary>
    private static async Task<HttpResponseMessage[]> SendBurstAsync(ParleyApi api, Guid conversationId, int count) =>
        await Task.WhenAll(Enumerable.Range(0, count).Select(i =>
            api.PostAsync("/api/v1/messages", new { conversation_id = conversationId, content = $"m{i}", message_type = "text" })));

    private static async Task<HttpResponseMessage> PreflightAsync(HttpClient client, string origin)
    {
        using var request = new HttpRequestMessage(HttpMethod.Options, "/api/v1/messages");
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", "POST");
        request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        return await client.SendAsync(request, Ct);
    }

    /// <summary>JSON sent with chunked transfer encoding: no Content-Length for Kestrel to refuse up front.</summary>
    private sealed class ChunkedJsonContent : HttpContent
    {
        private readonly byte[] _bytes;

        public ChunkedJsonContent(string json)
        {
            _bytes = Encoding.UTF8.GetBytes(json);
            Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            // Several writes, so the server reads the body in pieces as it would from a slow client.
            foreach (var chunk in _bytes.Chunk(512))
            {
                await stream.WriteAsync(chunk, Ct);
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

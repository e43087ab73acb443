using System.Buffers;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Parley.Server.Observability;
using Parley.Server.Realtime.Endpoint;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// WebSockets accepted below the request pipeline (<see cref="DirectUpgrade"/>): which connections it takes, that what it
/// declines still gets the pipeline's answers, and that the socket it accepts behaves as any other.
/// </summary>
public sealed class DirectUpgradeTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(s => s["Cors:AllowedOrigins:0"] = "https://app.example.com");
    private MetricCollector<long> _opened = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        _opened = new MetricCollector<long>(_factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _opened.Dispose();
        await _factory.DisposeAsync();
    }

    [Fact]
    public async Task PlainUpgrade_IsTakenDirectly_AndAnswersWithTheSubprotocol()
    {
        var token = ParleyFactory.Token("direct-alice");

        var (socket, connected) = await Handshake.ConnectAsync(
            _factory.WebSocketUri($"access_token={token}&device_id=phone-1"), o => o.AddSubProtocol("parley.v1"));

        Assert.Equal("parley.v1", socket.SubProtocol);
        Assert.Equal("direct-alice", connected.GetProperty("user_id").GetString());
        Assert.Equal("phone-1", connected.GetProperty("device_id").GetString());
        Assert.Equal([ParleyMetrics.UpgradeDirect], Upgrades());
        await Handshake.CloseAsync(socket);
    }

    [Fact]
    public async Task Refusals_AreAnsweredByThePipeline()
    {
        var token = ParleyFactory.Token("direct-bob");

        await Handshake.AssertRefusedAsync(_factory.WebSocketUri("access_token=not-a-token"), HttpStatusCode.Unauthorized);
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri($"access_token={token}&acks=maybe"), HttpStatusCode.BadRequest);
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri($"access_token={token}&cursor=garbage"), HttpStatusCode.BadRequest);
        await Handshake.AssertRefusedAsync(
            _factory.WebSocketUri($"access_token={token}"), HttpStatusCode.BadRequest, o => o.AddSubProtocol("other.v9"));
        await Handshake.AssertRefusedAsync(
            _factory.WebSocketUri($"access_token={token}"), HttpStatusCode.Forbidden, o => o.SetRequestHeader("Origin", "https://evil.example.org"));
        // As ASP.NET Core compares origins: case-sensitively, with every Origin line joined.
        await Handshake.AssertRefusedAsync(
            _factory.WebSocketUri($"access_token={token}"), HttpStatusCode.Forbidden, o => o.SetRequestHeader("Origin", "https://APP.example.com"));

        Assert.Empty(Upgrades());
    }

    [Fact]
    public async Task TwoOriginLines_AreRefused_AsThePipelineRefusesThem()
    {
        var head = Head($"/ws?access_token={ParleyFactory.Token("direct-two-origins")}", "Origin: https://app.example.com\r\nOrigin: https://evil.example.org\r\n");

        var answer = await ExchangeAsync(_factory.BaseAddress, head, "\r\n\r\n");

        Assert.StartsWith("HTTP/1.1 403 ", answer, StringComparison.Ordinal);
        Assert.Empty(Upgrades());
    }

    [Fact]
    public async Task BareLineFeed_IsLeftToTheHttpServer()
    {
        // Read as one header by a parser that splits on CRLF only, as two by Kestrel: a valid token in the query and an
        // invalid one in a hidden Authorization line, which the pipeline prefers to the query's.
        var good = ParleyFactory.Token("direct-lf");
        var head = Head($"/ws?access_token={good}", "X-Note: a\nAuthorization: Bearer not-a-token\r\n");

        var answer = await ExchangeAsync(_factory.BaseAddress, head, "\r\n\r\n");

        // Refused (401 for the hidden token, or 400 from a server that takes no bare LF): never upgraded on the query's token.
        Assert.Matches("^HTTP/1.1 40[01] ", answer);
        Assert.Empty(Upgrades());
    }

    [Fact]
    public async Task MetricsPort_ServesNoSocket()
    {
        var port = TestServerSettings.FreePort();
        await using var factory = new ParleyFactory(s => s["Metrics:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture)).StartKestrel();
        using var opened = new MetricCollector<long>(factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");

        await Handshake.AssertRefusedAsync(
            new Uri($"ws://127.0.0.1:{port}/ws?access_token={ParleyFactory.Token("direct-metrics")}"), HttpStatusCode.NotFound);

        Assert.Empty(opened.GetMeasurementSnapshot());
    }

    [Fact]
    public async Task LimitOnUpgradedConnections_EverySocketTakesThePipeline_WhereTheLimitHolds()
    {
        await using var factory = new ParleyFactory(services: services =>
            services.Configure<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>(kestrel => kestrel.Limits.MaxConcurrentUpgradedConnections = 1)).StartKestrel();
        using var opened = new MetricCollector<long>(factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");
        var uri = factory.WebSocketUri($"access_token={ParleyFactory.Token("direct-capped")}");

        var (socket, _) = await Handshake.ConnectAsync(uri);
        using var second = new ClientWebSocket();
        await Assert.ThrowsAsync<WebSocketException>(() => second.ConnectAsync(uri, Ct).WaitAsync(WsClient.DefaultTimeout, Ct));

        Assert.Equal([ParleyMetrics.UpgradePipeline], UpgradesOf(opened));
        await Handshake.CloseAsync(socket);
    }

    [Fact]
    public async Task CheckThatThrows_ThePipelineAnswers()
    {
        await using var factory = new ParleyFactory(services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        var head = Head($"/ws?access_token={ParleyFactory.Token("direct-store-down")}", string.Empty);

        // The stream position cannot be read: the direct upgrade hands the request on (nothing consumed), and the
        // pipeline answers as for any request whose storage failed, instead of the connection being dropped.
        store.Failing = true;
        var answer = await ExchangeAsync(factory.BaseAddress, head, "\r\n\r\n");
        store.Failing = false;

        Assert.StartsWith("HTTP/1.1 503 ", answer, StringComparison.Ordinal);
        Assert.Contains("Retry-After", answer, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task HeaderMode_IsTakenDirectly()
    {
        await using var factory = new ParleyFactory(s => s["Auth:Mode"] = "Header").StartKestrel();
        using var opened = new MetricCollector<long>(factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");

        var (socket, connected) = await Handshake.ConnectAsync(factory.WebSocketUri(), o => o.SetRequestHeader("X-User-ID", "direct-header"));

        Assert.Equal("direct-header", connected.GetProperty("user_id").GetString());
        Assert.Equal([ParleyMetrics.UpgradeDirect], UpgradesOf(opened));
        await Handshake.CloseAsync(socket);
    }

    [Fact]
    public async Task OverTheRequestRate_ThePipelineAnswers429_ChargingItOnce()
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["Limits:RequestBurst"] = "2";
            s["Limits:RequestRatePerSecond"] = "1";
        }).StartKestrel();
        var uri = factory.WebSocketUri($"access_token={ParleyFactory.Token("direct-limited")}");

        // A refused upgrade costs one request: with a burst of two, one refusal still leaves room for one socket.
        await Handshake.AssertRefusedAsync(new Uri(uri + "&acks=maybe"), HttpStatusCode.BadRequest);
        var (socket, _) = await Handshake.ConnectAsync(uri);
        await Handshake.AssertRefusedAsync(uri, HttpStatusCode.TooManyRequests);
        await Handshake.CloseAsync(socket);
    }

    [Fact]
    public async Task AllowedOrigin_IsTakenDirectly()
    {
        var token = ParleyFactory.Token("direct-carol");

        var (socket, _) = await Handshake.ConnectAsync(
            _factory.WebSocketUri($"access_token={token}"), o => o.SetRequestHeader("Origin", "https://app.example.com"));

        Assert.Equal([ParleyMetrics.UpgradeDirect], Upgrades());
        await Handshake.CloseAsync(socket);
    }

    [Fact]
    public async Task FramesSentWithTheHead_AreRead()
    {
        var token = ParleyFactory.Token("direct-dave");
        var address = _factory.BaseAddress;
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, Ct);
        var stream = tcp.GetStream();

        // The request head and a client frame in one write: the frame must not be lost with the head.
        var head = $"GET /ws?access_token={token} HTTP/1.1\r\nHost: {address.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        byte[] bytes = [.. Encoding.ASCII.GetBytes(head), .. MaskedText("{\"type\":\"ping\"}")];
        await stream.WriteAsync(bytes, Ct);

        var received = await ReadUntilAsync(stream, "\"pong\"");
        Assert.StartsWith("HTTP/1.1 101 Switching Protocols\r\n", received, StringComparison.Ordinal);
        // RFC 6455's own example key and answer.
        Assert.Contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", received, StringComparison.Ordinal);
        Assert.True(received.IndexOf("\"connected\"", StringComparison.Ordinal) < received.IndexOf("\"pong\"", StringComparison.Ordinal));
        Assert.Equal([ParleyMetrics.UpgradeDirect], Upgrades());
    }

    [Fact]
    public async Task SilentConnection_GoesOnToTheHttpServer()
    {
        var address = _factory.BaseAddress;
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, Ct);
        var stream = tcp.GetStream();

        // Nothing arrives within the wait: the connection is the HTTP server's (and its timeouts'), so an upgrade sent
        // after it is the pipeline's.
        await Task.Delay(DirectUpgrade.FirstBytesWait + TimeSpan.FromMilliseconds(500), Ct);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(Head($"/ws?access_token={ParleyFactory.Token("direct-silent")}", string.Empty)), Ct);

        Assert.StartsWith("HTTP/1.1 101 ", await ReadUntilAsync(stream, "\"connected\""), StringComparison.Ordinal);
        Assert.Equal([ParleyMetrics.UpgradePipeline], Upgrades());
    }

    [Fact]
    public async Task OtherRequests_AreServedAsBefore_OnTheSameConnection()
    {
        var address = _factory.BaseAddress;
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, Ct);
        var stream = tcp.GetStream();

        // A request that is not an upgrade, then a second one on the kept connection: both are the HTTP server's.
        var get = $"GET /health HTTP/1.1\r\nHost: {address.Authority}\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(get), Ct);
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", await ReadUntilAsync(stream, "Healthy"), StringComparison.Ordinal);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(get), Ct);
        // (The first body's last chunk may come with this read.)
        Assert.Contains("HTTP/1.1 200 OK\r\n", await ReadUntilAsync(stream, "Healthy"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientThatVanishes_IsUnregistered()
    {
        var token = ParleyFactory.Token("direct-erin");
        var (socket, _) = await Handshake.ConnectAsync(_factory.WebSocketUri($"access_token={token}"));
        var hub = _factory.Services.GetRequiredService<Parley.Server.Realtime.ConnectionHub>();
        Assert.Equal(1, hub.Count);

        Assert.Equal([ParleyMetrics.UpgradeDirect], Upgrades());
        socket.Abort();

        var deadline = DateTime.UtcNow + WsClient.DefaultTimeout;
        while (hub.Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the aborted socket is still registered");
            await Task.Delay(20, Ct);
        }
    }

    [Fact]
    public async Task TurnedOff_SocketsTakeThePipeline()
    {
        await using var factory = new ParleyFactory(s => s["Realtime:DirectUpgrade"] = "false");
        factory.StartKestrel();
        using var opened = new MetricCollector<long>(factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");

        var (socket, _) = await Handshake.ConnectAsync(factory.WebSocketUri($"access_token={ParleyFactory.Token("direct-frank")}"));

        Assert.Equal([ParleyMetrics.UpgradePipeline], UpgradesOf(opened));
        await Handshake.CloseAsync(socket);
    }

    [Theory]
    [InlineData("GET /ws?access_token=x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", true)]
    [InlineData("GET /WS HTTP/1.1\r\nHost: h\r\n\r\n", true)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\n", false)] // not complete
    [InlineData("GET /ws HTTP/1.0\r\nHost: h\r\n\r\n", false)]
    [InlineData("POST /ws HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /ws/x HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /wsx HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /api/v1/conversations HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\n\r\n", false)] // no Host
    [InlineData("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\n folded: value\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nX-A: caf\u00e9\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nX-A: a\u0001b\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n", false)]
    [InlineData("GET /ws#f HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nX-A: a\nB: b\r\n\r\n", false)] // a bare LF
    [InlineData("GET /ws HTTP/1.1\r\nHost: h\r\nX-A: a\rB: b\r\n\r\n", false)] // a bare CR
    [InlineData("GET /ws?a\n=b HTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /ws\tHTTP/1.1\r\nHost: h\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: h:abc\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: a b\r\n\r\n", false)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true)]
    [InlineData("GET /ws HTTP/1.1\r\nHost: example.com:443\r\n\r\n", true)]
    public void TryParse_TakesOnlyTheNarrowForm(string text, bool taken)
    {
        var head = DirectUpgrade.TryParse(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(text)));

        Assert.Equal(taken, head is not null);
    }

    [Fact]
    public void TryParse_ReadsQueryHeadersAndLength_AcrossSegments()
    {
        const string Text = "GET /ws?acks=true HTTP/1.1\r\nHost: h:80\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: a, parley.v1\r\n\r\n";
        var bytes = Encoding.ASCII.GetBytes(Text + "\u0081\u0000");

        var head = DirectUpgrade.TryParse(Segments(bytes, 7));

        Assert.NotNull(head);
        Assert.Equal(Text.Length, head.Length);
        Assert.Equal("?acks=true", head.Query);
        Assert.True(head.IsWebSocketUpgrade);
        Assert.Equal(["a", "parley.v1"], head.ToContext().WebSockets.WebSocketRequestedProtocols);
        Assert.Equal("h:80", head.Single("host"));
    }

    [Theory]
    [InlineData("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", true)]
    [InlineData("Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", false)]
    [InlineData("Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", false)]
    [InlineData("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", false)]
    [InlineData("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=", false)]
    [InlineData("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13", false)]
    public void IsWebSocketUpgrade_AsRfc6455Asks(string headers, bool upgrade)
    {
        var head = DirectUpgrade.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes($"GET /ws HTTP/1.1\r\nHost: h\r\n{headers}\r\n\r\n")));

        Assert.Equal(upgrade, head!.IsWebSocketUpgrade);
    }

    private static string Head(string target, string extraHeaders) =>
        $"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + $"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extraHeaders}\r\n";

    /// <summary>Sends a request head on a new connection and reads the answer until <paramref name="marker"/>.</summary>
    private static async Task<string> ExchangeAsync(Uri address, string head, string marker)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, Ct);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), Ct);
        return await ReadUntilAsync(stream, marker);
    }

    /// <summary>
    /// On an <c>https</c> endpoint of <c>Kestrel:Endpoints</c> (Parley's Kestrel terminating TLS), an HTTP/1.1 upgrade is
    /// taken inside TLS as a plain one is; a refusal is still the pipeline's; HTTP/2 over TLS (ALPN <c>h2</c>) goes to the
    /// pipeline; and the endpoint serves plain requests over TLS as before.
    /// </summary>
    [Fact]
    public async Task UpgradeOverTls_OnAConfiguredHttpsEndpoint_IsTakenDirectly_WhileRefusalsAndHttp2TakeThePipeline()
    {
        var port = TestServerSettings.FreePort();
        var certificate = Path.Combine(Path.GetTempPath(), $"parley-tls-{Guid.NewGuid():N}.pfx");
        var (pfx, thumbprint) = SelfSignedLoopbackCertificate("direct-tls");
        await File.WriteAllBytesAsync(certificate, pfx, Ct);
        // The client trusts exactly the test's certificate.
        System.Net.Security.RemoteCertificateValidationCallback trusted = (_, presented, _, _) =>
            presented is not null && presented.GetCertHashString() == thumbprint;
        try
        {
            await using var factory = new ParleyFactory(s =>
            {
                s["Kestrel:Endpoints:Secure:Url"] = $"https://127.0.0.1:{port}";
                s["Kestrel:Endpoints:Secure:Certificate:Path"] = certificate;
                s["Kestrel:Endpoints:Secure:Certificate:Password"] = "direct-tls";
            }).StartKestrelOnConfiguredEndpoints();
            using var opened = new MetricCollector<long>(factory.Services.GetRequiredService<IMeterFactory>(), ParleyMetrics.MeterName, "parley.connections.opened");
            var uri = new Uri($"wss://127.0.0.1:{port}/ws?access_token={ParleyFactory.Token("direct-tls")}");

            var (socket, connected) = await Handshake.ConnectAsync(uri, o => o.RemoteCertificateValidationCallback = trusted);
            Assert.Equal("direct-tls", connected.GetProperty("user_id").GetString());
            await Handshake.CloseAsync(socket);

            await Handshake.AssertRefusedAsync(
                new Uri($"wss://127.0.0.1:{port}/ws?access_token=not-a-token"), HttpStatusCode.Unauthorized,
                o => o.RemoteCertificateValidationCallback = trusted);

            using (var http2 = new ClientWebSocket())
            {
                http2.Options.HttpVersion = HttpVersion.Version20;
                http2.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
                using var invoker = new HttpMessageInvoker(new SocketsHttpHandler
                {
                    SslOptions = { RemoteCertificateValidationCallback = trusted },
                });
                await http2.ConnectAsync(uri, invoker, Ct).WaitAsync(WsClient.DefaultTimeout, Ct);
                Assert.Equal(WebSocketState.Open, http2.State);
                await http2.CloseAsync(WebSocketCloseStatus.NormalClosure, null, Ct);
            }

            using (var client = new HttpClient(new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = trusted },
            }))
            {
                Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri($"https://127.0.0.1:{port}/health"), Ct)).StatusCode);
            }

            Assert.Equal(
                [ParleyMetrics.UpgradeDirect, ParleyMetrics.UpgradePipeline],
                UpgradesOf(opened));
        }
        finally
        {
            File.Delete(certificate);
        }
    }

    /// <summary>A certificate for 127.0.0.1, valid for a day: as a PFX protected by <paramref name="password"/>, and its thumbprint.</summary>
    private static (byte[] Pfx, string Thumbprint) SelfSignedLoopbackCertificate(string password)
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(
            "CN=127.0.0.1", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var names = new System.Security.Cryptography.X509Certificates.SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return (certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, password), certificate.GetCertHashString());
    }

    private List<string?> Upgrades() => UpgradesOf(_opened);

    /// <summary>The <c>upgrade</c> label of every connection <paramref name="opened"/> counted, in order.</summary>
    private static List<string?> UpgradesOf(MetricCollector<long> opened) =>
        [.. opened.GetMeasurementSnapshot().Select(m => (string?)m.Tags["upgrade"])];

    private static byte[] MaskedText(string text)
    {
        var payload = Encoding.UTF8.GetBytes(text);
        byte[] mask = [1, 2, 3, 4];
        var frame = new byte[2 + 4 + payload.Length];
        frame[0] = 0x81;
        frame[1] = (byte)(0x80 | payload.Length);
        mask.CopyTo(frame, 2);
        for (var i = 0; i < payload.Length; i++)
        {
            frame[6 + i] = (byte)(payload[i] ^ mask[i % 4]);
        }

        return frame;
    }

    private static async Task<string> ReadUntilAsync(NetworkStream stream, string marker)
    {
        var received = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(WsClient.DefaultTimeout);
        while (!received.ToString().Contains(marker, StringComparison.Ordinal))
        {
            var count = await stream.ReadAsync(buffer, timeout.Token);
            Assert.NotEqual(0, count);
            received.Append(Encoding.Latin1.GetString(buffer, 0, count));
        }

        return received.ToString();
    }

    private static ReadOnlySequence<byte> Segments(byte[] bytes, int size)
    {
        Segment? first = null;
        Segment? last = null;
        for (var offset = 0; offset < bytes.Length; offset += size)
        {
            var segment = new Segment(bytes.AsMemory(offset, Math.Min(size, bytes.Length - offset)), last);
            first ??= segment;
            last = segment;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, Segment? previous)
        {
            Memory = memory;
            if (previous is not null)
            {
                RunningIndex = previous.RunningIndex + previous.Memory.Length;
                previous.Next = this;
            }
        }
    }
}

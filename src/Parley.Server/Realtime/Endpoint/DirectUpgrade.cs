using System.Buffers;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting.Auth;
using Parley.Server.Observability;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Realtime.Endpoint;

/// <summary>
/// Accepts WebSockets below ASP.NET Core's request pipeline, as Kestrel connection middleware: a connection whose first
/// bytes are a complete, plain <c>GET /ws</c> upgrade that would be accepted (authenticated, within its rate, every check
/// of <see cref="SocketSessions.CheckAsync"/> passed) is answered with 101 here and runs over the connection's own pipes.
/// Such a socket no longer carries an HTTP request for its whole life (the HTTP/1.1 connection state, request and
/// response headers, the context and the middleware frames waiting under the endpoint): about half of an idle
/// socket's memory (docs/benchmarks.md, "Idle connections").
/// <para>
/// Anything else goes on to the HTTP server untouched, with the bytes read so far: other requests, HTTP/2, a request
/// head that did not arrive in the first read, one this parser does not take (see <see cref="TryParse"/>), and every
/// upgrade that would be refused. The pipeline then answers it as it always did (401, 403, 429, 400, 503 with their
/// ProblemDetails), so refusals have one implementation. On an endpoint where Parley's Kestrel terminates TLS, the
/// middleware runs inside TLS where Kestrel lets it (<see cref="AddInsideTls"/>); elsewhere TLS connections go on to the
/// HTTP server as they are. <c>Realtime:DirectUpgrade</c> = false turns this off.
/// </para>
/// </summary>
internal sealed partial class DirectUpgrade(
    SocketSessions sessions,
    IServiceScopeFactory scopes,
    IOptions<WebSocketOptions> webSocketOptions,
    IOptions<Microsoft.AspNetCore.HostFiltering.HostFilteringOptions> hostFiltering,
    IOptions<RateLimiterOptions> rateLimits,
    IOptions<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions> kestrel,
    IOptions<MetricsOptions> metricsOptions,
    StorageState storage,
    TimeProvider time,
    ILogger<DirectUpgrade> logger)
{
    /// <summary>The longest request head taken here; longer ones go to the HTTP server, whose own limits apply.</summary>
    internal const int MaxHeadBytes = 8 * 1024;

    /// <summary>
    /// How long a new connection's first bytes are waited for here. A client sends its request head as soon as it has
    /// connected; a connection that stays silent goes on to the HTTP server after this, whose own timeouts then apply.
    /// </summary>
    internal static readonly TimeSpan FirstBytesWait = TimeSpan.FromSeconds(2);

    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();

    /// <summary>ALPN's name of HTTP/2: such a TLS connection carries no HTTP/1.1 upgrade.</summary>
    private static readonly byte[] Http2Protocol = "h2"u8.ToArray();

    /// <summary>
    /// Adds the middleware to every endpoint Kestrel listens on that speaks HTTP/1.1, except the metrics port, where no
    /// WebSocket is served. Added to every endpoint's defaults, it sits ahead of TLS: on an endpoint that has the
    /// middleware inside its TLS (<see cref="AddInsideTls"/>) it steps aside; on any other TLS endpoint it finds no request
    /// head in the encrypted first bytes and passes them on.
    /// </summary>
    public static void AddTo(ListenOptions listen) => Add(listen, insideTls: false);

    /// <summary>
    /// For an endpoint of <c>Kestrel:Endpoints</c> (Kestrel configures each one here before it adds TLS itself, and adds
    /// none where TLS is there already): on an <c>https</c> endpoint with its certificate and without SNI, TLS is added
    /// here, as Kestrel would add it with the same options, and the middleware after it, where the bytes are plain.
    /// Other endpoints are left as they are (an SNI endpoint's TLS is Kestrel's to build: its sockets take the pipeline).
    /// </summary>
    public static void AddInsideTls(EndpointConfiguration endpoint)
    {
        var https = endpoint.HttpsOptions;
        if (!endpoint.IsHttps || endpoint.ConfigSection.GetSection("Sni").GetChildren().Any()
            || (https.ServerCertificate is null && https.ServerCertificateSelector is null)
            || !InsideTls.TryAdd(endpoint.ListenOptions, true))
        {
            return;
        }

        endpoint.ListenOptions.UseHttps(https);
        Add(endpoint.ListenOptions, insideTls: true);
    }

    /// <summary>Endpoints with the middleware inside their TLS (<see cref="AddInsideTls"/>): the one ahead of TLS steps aside.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ListenOptions, object> InsideTls = [];

    private static void Add(ListenOptions listen, bool insideTls) =>
        listen.Use(next =>
        {
            // Built once the endpoint is fully configured (its protocols and its TLS included).
            var direct = listen.ApplicationServices.GetRequiredService<DirectUpgrade>();
            return (listen.Protocols & HttpProtocols.Http1) == 0 || (!insideTls && InsideTls.TryGetValue(listen, out _))
                ? next
                : connection => direct.OnConnectionAsync(connection, next, insideTls);
        });

    /// <summary>Takes the connection's socket when its first bytes are an upgrade that would be accepted; else passes it on.</summary>
    /// <param name="connection">The connection, as Kestrel accepted it (or as TLS decrypted it).</param>
    /// <param name="next">The rest of the endpoint's connection pipeline (TLS, the HTTP server).</param>
    /// <param name="secure">Inside TLS: the upgrade came over <c>wss://</c>.</param>
    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next, bool secure = false)
    {
        // The metrics port serves no socket; with a limit on upgraded connections set, every socket takes the pipeline,
        // where Kestrel counts it.
        if ((connection.LocalEndPoint is System.Net.IPEndPoint { Port: var port } && port == metricsOptions.Value.Port)
            || kestrel.Value.Limits.MaxConcurrentUpgradedConnections is not null
            || (secure && connection.Features.Get<ITlsApplicationProtocolFeature>()?.ApplicationProtocol.Span.SequenceEqual(Http2Protocol) == true))
        {
            await next(connection);
            return;
        }

        var input = connection.Transport.Input;
        ReadResult read;
        using (var wait = new CancellationTokenSource(FirstBytesWait))
        {
            try
            {
                read = await input.ReadAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
                await next(connection);
                return;
            }
        }

        var head = TryParse(read.Buffer, kestrel.Value.Limits);
        var plan = head is null ? null : await TryAcceptAsync(head, connection, secure);
        if (plan is null)
        {
            // Nothing consumed: the HTTP server reads the same bytes.
            input.AdvanceTo(read.Buffer.Start);
            await next(connection);
            return;
        }

        using var accepted = plan; // the user's socket slot, until the socket has ended
        input.AdvanceTo(read.Buffer.GetPosition(head!.Length));
        // The 101 is written (and flushed by RunAsync) here, so that only what the socket needs stays referenced for its
        // life: not the parsed head, nor the bytes it was read from.
        connection.Transport.Output.Write(SwitchingProtocols(head.Key, plan.Subprotocol));
        head = null;
        read = default;
        await RunAsync(connection, plan);
    }

    /// <summary>
    /// The checks of the pipeline for this request: the plan when every one passes, else null. Nothing is consumed until
    /// then, so whatever fails here (a refusal, a store that cannot be read, a client that went away) the pipeline
    /// answers as for any request.
    /// </summary>
    private async Task<SocketPlan?> TryAcceptAsync(RequestHead head, ConnectionContext connection, bool secure)
    {
        try
        {
            return await CheckAsync(head, connection, secure);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ChecksFailed(logger, connection.ConnectionId, ex);
            return null;
        }
    }

    private async Task<SocketPlan?> CheckAsync(RequestHead head, ConnectionContext connection, bool secure)
    {
        if (!head.IsWebSocketUpgrade || !HostAllowed(head) || !OriginAllowed(head) || !storage.IsReady || !sessions.Accepting)
        {
            return null;
        }

        await using var scope = scopes.CreateAsyncScope();
        var context = head.ToContext(secure);
        context.RequestServices = scope.ServiceProvider;
        if (connection.RemoteEndPoint is System.Net.IPEndPoint remote)
        {
            context.Connection.RemoteIpAddress = remote.Address;
            context.Connection.RemotePort = remote.Port;
        }

        var authenticated = await context.AuthenticateAsync();
        if (!authenticated.Succeeded)
        {
            return null;
        }

        context.User = authenticated.Principal;
        if (Caller.From(context) is not { } caller || rateLimits.Value.GlobalLimiter is not { } limiter)
        {
            return null;
        }

        // The endpoint's checks before the request's rate: a request refused here is charged once, by the pipeline.
        var checkedRequest = await sessions.CheckAsync(SocketRequest.Read(context, caller), connection.ConnectionClosed);
        if (checkedRequest.Value is not { } plan)
        {
            return null;
        }

        using var lease = limiter.AttemptAcquire(context);
        if (lease.IsAcquired)
        {
            return plan;
        }

        plan.Dispose(); // the pipeline answers 429, and gives nothing back
        return null;
    }

    /// <summary>The host filter of the pipeline (<c>AllowedHosts</c>): exact names and <c>*.</c> suffixes, ports ignored.</summary>
    private bool HostAllowed(RequestHead head)
    {
        var allowed = hostFiltering.Value.AllowedHosts;
        if (allowed.Count == 0 || allowed.Contains("*"))
        {
            return true;
        }

        var host = HostString.FromUriComponent(head.Single("Host") ?? string.Empty).Host;
        foreach (var entry in allowed)
        {
            if (entry.StartsWith("*.", StringComparison.Ordinal)
                ? host.EndsWith(entry[1..], StringComparison.OrdinalIgnoreCase)
                : host.Equals(HostString.FromUriComponent(entry).Host, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// ASP.NET Core's WebSocket origin check: with origins configured (and no <c>*</c>), a request that sends
    /// <c>Origin</c> must send one of them, compared with the configured origins lower-cased, all its lines joined.
    /// </summary>
    private bool OriginAllowed(RequestHead head)
    {
        var allowed = webSocketOptions.Value.AllowedOrigins;
        var origin = head.All("Origin");
        return allowed.Count == 0 || allowed.Contains("*") || origin.Length == 0
            || allowed.Any(o => string.Equals(o.ToLowerInvariant(), origin, StringComparison.Ordinal));
    }

    private async Task RunAsync(ConnectionContext connection, SocketPlan plan)
    {
        try
        {
            await connection.Transport.Output.FlushAsync(connection.ConnectionClosed);
            var stream = new HeartbeatStream(new TransportStream(connection.Transport), time);
            using var socket = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions
            {
                IsServer = true,
                SubProtocol = plan.Subprotocol,
                KeepAliveInterval = TimeSpan.Zero,
            });
            await sessions.RunAsync(plan, socket, stream, ParleyMetrics.UpgradeDirect, connection.ConnectionClosed);
            // No ping may still be writing once the connection is handed back: Kestrel then completes its pipe.
            socket.Dispose();
            await stream.StopWritesAsync();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionResetException or WebSocketException)
        {
            // The client went away; the connection ends here as it would under the pipeline.
            Log.Ended(logger, connection.ConnectionId, ex);
        }
    }

    /// <summary>The 101 answer (RFC 6455 section 4.2.2).</summary>
    private static byte[] SwitchingProtocols(string key, string? subprotocol)
    {
        // SHA-1 is what the protocol specifies for this handshake value; it protects nothing.
#pragma warning disable CA5350
        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
        var text = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept + "\r\n"
            + (subprotocol is null ? string.Empty : "Sec-WebSocket-Protocol: " + subprotocol + "\r\n")
            + "\r\n";
        return Encoding.ASCII.GetBytes(text);
    }

    /// <summary>
    /// The request head at the start of <paramref name="buffer"/> when it is a complete <c>GET /ws</c> request of HTTP/1.1
    /// in a form this parser takes, else null. Deliberately narrow: only printable ASCII, no header continuation lines, no
    /// body (neither <c>Content-Length</c> nor <c>Transfer-Encoding</c>), a <c>Host</c> header, at most
    /// <see cref="MaxHeadBytes"/>. Whatever it declines, the HTTP server parses with its full rules.
    /// </summary>
    internal static RequestHead? TryParse(ReadOnlySequence<byte> buffer, Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerLimits? limits = null)
    {
        var maxHead = (int)Math.Min(MaxHeadBytes, limits?.MaxRequestHeadersTotalSize ?? MaxHeadBytes);
        var window = buffer.Length > maxHead ? buffer.Slice(0, maxHead) : buffer;
        if (window.Length < 16 || !window.FirstSpan.StartsWith("GET /"u8))
        {
            return null;
        }

        var bytes = window.IsSingleSegment ? window.FirstSpan : window.ToArray();
        var end = bytes.IndexOf(HeadEnd);
        if (end < 0)
        {
            return null;
        }

        var length = end + HeadEnd.Length;
        foreach (var b in bytes[..end])
        {
            if (b is (< 0x20 and not (byte)'\t' and not (byte)'\r' and not (byte)'\n') or >= 0x7F)
            {
                return null;
            }
        }

        var lines = Encoding.ASCII.GetString(bytes[..end]).Split("\r\n");
        var requestLine = lines[0];
        // A bare CR or LF is a line end to some parsers (Kestrel's among them) and not to others: none is taken here.
        if (lines.Any(line => line.Contains('\r', StringComparison.Ordinal) || line.Contains('\n', StringComparison.Ordinal))
            || lines.Length - 1 > (limits?.MaxRequestHeaderCount ?? 100) || requestLine.Length > (limits?.MaxRequestLineSize ?? 8192)
            || requestLine.Contains('\t', StringComparison.Ordinal)
            || !requestLine.StartsWith("GET ", StringComparison.Ordinal) || !requestLine.EndsWith(" HTTP/1.1", StringComparison.Ordinal))
        {
            return null;
        }

        var target = requestLine[4..^9];
        var queryStart = target.IndexOf('?', StringComparison.Ordinal);
        var path = queryStart < 0 ? target : target[..queryStart];
        if (!path.Equals(FrameTypes.WebSocketPath, StringComparison.OrdinalIgnoreCase) || target.Contains(' ', StringComparison.Ordinal)
            || target.Contains('#', StringComparison.Ordinal))
        {
            return null;
        }

        var headers = new List<(string Name, string Value)>(lines.Length - 1);
        for (var i = 1; i < lines.Length; i++)
        {
            var line = lines[i];
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !IsToken(line.AsSpan(0, colon)))
            {
                return null;
            }

            headers.Add((line[..colon], line[(colon + 1)..].Trim(' ', '\t')));
        }

        var head = new RequestHead(length, queryStart < 0 ? string.Empty : target[queryStart..], headers);
        return !IsHost(head.Single("Host")) || head.Has("Content-Length") || head.Has("Transfer-Encoding") ? null : head;
    }

    /// <summary>A <c>Host</c> of a name or address and an optional numeric port (anything else is Kestrel's to refuse).</summary>
    private static bool IsHost(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return false;
        }

        var host = HostString.FromUriComponent(value);
        var name = host.Host.StartsWith('[') && host.Host.EndsWith(']') ? host.Host[1..^1] : host.Host;
        var port = value.Length > host.Host.Length ? value[host.Host.Length..] : string.Empty;
        return Uri.CheckHostName(name) != UriHostNameType.Unknown
            && (port.Length == 0 || (port.Length > 1 && port[0] == ':' && port[1..].All(char.IsAsciiDigit) && port.Length <= 6));
    }

    private static bool IsToken(ReadOnlySpan<char> name)
    {
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A request head as read: its length in bytes, its query (with the <c>?</c>) and its header lines.</summary>
    internal sealed class RequestHead(int length, string query, List<(string Name, string Value)> headers)
    {
        public int Length => length;

        public string Query => query;

        public IReadOnlyList<(string Name, string Value)> Headers => headers;

        /// <summary>The header's value when it appears exactly once; null when it is missing or repeated.</summary>
        public string? Single(string name)
        {
            string? found = null;
            foreach (var (headerName, value) in headers)
            {
                if (headerName.Equals(name, StringComparison.OrdinalIgnoreCase))
                {
                    if (found is not null)
                    {
                        return null;
                    }

                    found = value;
                }
            }

            return found;
        }

        public bool Has(string name) => headers.Exists(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase));

        /// <summary>Every line of the header, joined with commas as ASP.NET Core presents it; empty when there is none.</summary>
        public string All(string name) =>
            string.Join(',', headers.Where(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value));

        public string Key => Single("Sec-WebSocket-Key") ?? string.Empty;

        /// <summary>
        /// The request as an <see cref="HttpContext"/> of its own (no connection, no services), for the pipeline's handlers
        /// and parsers to read it as they read any request: the subprotocols offered, for one.
        /// </summary>
        public DefaultHttpContext ToContext(bool secure = false)
        {
            var context = new DefaultHttpContext();
            var request = context.Request;
            request.Method = HttpMethods.Get;
            request.Scheme = secure ? "https" : "http";
            request.Path = FrameTypes.WebSocketPath;
            request.QueryString = new QueryString(query);
            foreach (var (name, value) in headers)
            {
                request.Headers.Append(name, value);
            }

            return context;
        }

        /// <summary>RFC 6455 section 4.2.1, as ASP.NET Core checks it: the upgrade tokens, version 13, a 16-byte key.</summary>
        public bool IsWebSocketUpgrade =>
            Single("Upgrade") is { } upgrade && upgrade.Equals("websocket", StringComparison.OrdinalIgnoreCase)
            && Single("Connection") is { } connection
            && connection.Split(',', StringSplitOptions.TrimEntries).Any(token => token.Equals("upgrade", StringComparison.OrdinalIgnoreCase))
            && Single("Sec-WebSocket-Version") == "13"
            && IsKey(Key);

        private static bool IsKey(string key)
        {
            Span<byte> decoded = stackalloc byte[18];
            return key.Length == 24 && Convert.TryFromBase64String(key, decoded, out var written) && written == 16;
        }
    }

    /// <summary>The connection's pipes as the stream a WebSocket runs over (each write is flushed, as Kestrel's upgraded stream does).</summary>
    private sealed class TransportStream(IDuplexPipe transport) : Stream
    {
        private int _disposed;

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var reader = transport.Input;
            while (Volatile.Read(ref _disposed) == 0)
            {
                var result = await reader.ReadAsync(cancellationToken);
                var data = result.Buffer;
                if (buffer.IsEmpty && !data.IsEmpty)
                {
                    // A zero-byte read: it waited for data, and consumes none.
                    reader.AdvanceTo(data.Start);
                    return 0;
                }

                if (!data.IsEmpty)
                {
                    var count = (int)Math.Min(data.Length, buffer.Length);
                    data.Slice(0, count).CopyTo(buffer.Span);
                    reader.AdvanceTo(data.GetPosition(count));
                    return count;
                }

                reader.AdvanceTo(data.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return 0;
                }
            }

            return 0;
        }

        /// <summary>Ends a pending read and write (an aborted WebSocket disposes its stream to stop its loops).</summary>
        protected override void Dispose(bool disposing)
        {
            if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                transport.Input.CancelPendingRead();
                transport.Output.CancelPendingFlush();
            }

            base.Dispose(disposing);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var result = await transport.Output.WriteAsync(buffer, cancellationToken);
            if (result.IsCanceled)
            {
                throw new OperationCanceledException(cancellationToken);
            }

            if (result.IsCompleted)
            {
                throw new IOException("The connection no longer reads what is written.");
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async Task FlushAsync(CancellationToken cancellationToken) => await transport.Output.FlushAsync(cancellationToken);

        public override void Flush() => throw new NotSupportedException("Asynchronous only.");

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("Asynchronous only.");

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("Asynchronous only.");

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2013, Level = LogLevel.Debug, Message = "Connection {KestrelConnectionId} ended by the client")]
        public static partial void Ended(ILogger logger, string kestrelConnectionId, Exception exception);

        [LoggerMessage(EventId = 2014, Level = LogLevel.Debug, Message = "Connection {KestrelConnectionId}: checking the upgrade threw; the request goes on to the pipeline, which answers it")]
        public static partial void ChecksFailed(ILogger logger, string kestrelConnectionId, Exception exception);
    }
}

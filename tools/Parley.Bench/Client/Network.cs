using System.Net;
using System.Net.Sockets;

namespace Parley.Bench.Client;

/// <summary>
/// The tool's HTTP stacks: one for WebSocket handshakes, one pooled for REST. Both open their TCP connections
/// through <see cref="ConnectAsync"/>, which binds each socket to the next of the given source addresses: towards
/// one server address and port, each local address has its own ~28,000 ephemeral ports, so several loopback
/// addresses (127.0.0.2, 127.0.0.3, ...) allow more connections than one.
/// </summary>
internal sealed class Network : IDisposable
{
    // Linux: <netinet/in.h> SOL_IP and IP_BIND_ADDRESS_NO_PORT. With it, bind() picks no port; connect() picks one
    // unique per (source, destination) pair, so bound sockets share the port range instead of exhausting it.
    private const int SolIp = 0;
    private const int IpBindAddressNoPort = 24;

    private readonly IReadOnlyList<IPAddress> _sources;
    private readonly SocketsHttpHandler _socketHandler;
    private readonly SocketsHttpHandler _restHandler;
    private int _next = -1;

    public Network(IReadOnlyList<IPAddress> sources, int httpConnections)
    {
        _sources = sources;
        _socketHandler = CreateHandler(int.MaxValue);
        _restHandler = CreateHandler(httpConnections);
        SocketInvoker = new HttpMessageInvoker(_socketHandler, disposeHandler: false);
        Http = new HttpClient(_restHandler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary>For <c>ClientWebSocket.ConnectAsync(uri, invoker, ct)</c>.</summary>
    public HttpMessageInvoker SocketInvoker { get; }

    /// <summary>For set-up and REST sends; at most the configured number of connections per server.</summary>
    public HttpClient Http { get; }

    public void Dispose()
    {
        Http.Dispose();
        SocketInvoker.Dispose();
        _socketHandler.Dispose();
        _restHandler.Dispose();
    }

    private SocketsHttpHandler CreateHandler(int maxConnections) => new()
    {
        ConnectCallback = ConnectAsync,
        MaxConnectionsPerServer = maxConnections,
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        ConnectTimeout = TimeSpan.FromSeconds(15),
        UseCookies = false,
        UseProxy = false,
        AutomaticDecompression = DecompressionMethods.None,
    };

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var source = _sources.Count == 0 ? null : _sources[(int)((uint)Interlocked.Increment(ref _next) % (uint)_sources.Count)];

        // IPv4 first (localhost resolves to ::1 too, and a server may listen on 127.0.0.1 only); a bound source
        // address limits the candidates to its family.
        var candidates = addresses
            .Where(a => source is null || a.AddressFamily == source.AddressFamily)
            .OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1)
            .ToList();
        if (candidates.Count == 0)
        {
            throw new SocketException((int)SocketError.AddressFamilyNotSupported);
        }

        SocketException? last = null;
        foreach (var target in candidates)
        {
            var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                if (source is not null)
                {
                    if (OperatingSystem.IsLinux() && source.AddressFamily == AddressFamily.InterNetwork)
                    {
                        socket.SetRawSocketOption(SolIp, IpBindAddressNoPort, BitConverter.GetBytes(1));
                    }

                    socket.Bind(new IPEndPoint(source, 0));
                }

                await socket.ConnectAsync(new IPEndPoint(target, context.DnsEndPoint.Port), cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        throw last!;
    }
}

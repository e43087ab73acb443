using System.Net;
using System.Net.Sockets;

namespace Parley.Server.Observability;

/// <summary>The client networks allowed to read <c>/metrics</c>.</summary>
internal sealed class NetworkAllowList
{
    /// <summary>What an empty <see cref="MetricsOptions.AllowedNetworks"/> means: this machine only.</summary>
    public static readonly IReadOnlyList<IPNetwork> Loopback = [new(IPAddress.Parse("127.0.0.0"), 8), new(IPAddress.IPv6Loopback, 128)];

    private readonly IPNetwork[] _networks;

    public NetworkAllowList(IEnumerable<string> networks)
    {
        _networks = [.. networks.Select(n => TryParseNetwork(n, out var network) ? network : throw new FormatException($"'{n}' is not a network."))];
        if (_networks.Length == 0)
        {
            _networks = [.. Loopback];
        }
    }

    public IReadOnlyList<IPNetwork> Networks => _networks;

    /// <summary>
    /// Whether a client at <paramref name="address"/> may read the metrics. An IPv4 client on a dual-stack socket arrives
    /// as ::ffff:a.b.c.d and is matched as a.b.c.d. No address (an in-memory or Unix-socket connection) is refused.
    /// </summary>
    public bool Allows(IPAddress? address)
    {
        if (address is null)
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        foreach (var network in _networks)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A network in CIDR notation, or one address (a network of one).</summary>
    public static bool TryParseNetwork(string? text, out IPNetwork network)
    {
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            network = default;
            return false;
        }

        if (!text.Contains('/', StringComparison.Ordinal) && IPAddress.TryParse(text, out var single))
        {
            network = AsIPv4(new IPNetwork(single, single.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
            return true;
        }

        // A network written with bits after its prefix (10.0.0.1/8) is refused rather than guessed at: was 10.0.0.0/8
        // meant, or 10.0.0.1/32?
        if (IPNetwork.TryParse(text, out network)
            && IPAddress.TryParse(text.AsSpan(0, text.IndexOf('/', StringComparison.Ordinal)), out var written)
            && network.BaseAddress.Equals(written))
        {
            network = AsIPv4(network);
            return true;
        }

        return false;
    }

    /// <summary>
    /// An IPv4-mapped network (::ffff:10.0.0.0/104, as addresses show in logs of dual-stack sockets) as the IPv4 network it
    /// names: clients are matched by their IPv4 address, so the mapped form would never match.
    /// </summary>
    private static IPNetwork AsIPv4(IPNetwork network) =>
        network.BaseAddress.IsIPv4MappedToIPv6 && network.PrefixLength >= 96
            ? new IPNetwork(network.BaseAddress.MapToIPv4(), network.PrefixLength - 96)
            : network;
}

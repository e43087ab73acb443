using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Parley.Bench.Options;

/// <summary>
/// Parses <c>--source-addresses</c>: a count (<c>8</c>: 127.0.0.2 … 127.0.0.9), IPv4 ranges
/// (<c>127.0.0.2-127.0.0.20</c>, inclusive) and single addresses, separated by commas.
/// </summary>
internal static class AddressList
{
    /// <summary>More would only hold memory: each address already gives ~28,000 ports towards one server port.</summary>
    public const int MaxAddresses = 65_536;

    public static IReadOnlyList<IPAddress> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        if (int.TryParse(trimmed, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count))
        {
            if (count is < 1 or > 254)
            {
                throw new FormatException($"a count of source addresses must be from 1 to 254 (127.0.0.2 onwards), not {count}");
            }

            return Range(IPAddress.Parse("127.0.0.2"), IPAddress.Parse($"127.0.0.{count + 1}"));
        }

        var addresses = new List<IPAddress>();
        foreach (var part in trimmed.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-', StringComparison.Ordinal);
            if (dash < 0)
            {
                addresses.Add(ParseOne(part));
            }
            else
            {
                addresses.AddRange(Range(ParseOne(part[..dash].Trim()), ParseOne(part[(dash + 1)..].Trim())));
            }

            if (addresses.Count > MaxAddresses)
            {
                throw new FormatException($"more than {MaxAddresses} source addresses");
            }
        }

        if (addresses.Count == 0)
        {
            throw new FormatException("no source address given");
        }

        return addresses;
    }

    private static IPAddress ParseOne(string text) =>
        IPAddress.TryParse(text, out var address) ? address : throw new FormatException($"'{text}' is not an IP address");

    private static List<IPAddress> Range(IPAddress first, IPAddress last)
    {
        if (first.AddressFamily != AddressFamily.InterNetwork || last.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new FormatException($"a range needs IPv4 addresses: {first}-{last}");
        }

        var from = BinaryPrimitives.ReadUInt32BigEndian(first.GetAddressBytes());
        var to = BinaryPrimitives.ReadUInt32BigEndian(last.GetAddressBytes());
        if (to < from)
        {
            throw new FormatException($"the range {first}-{last} ends before it starts");
        }

        if (to - from >= MaxAddresses)
        {
            throw new FormatException($"the range {first}-{last} has more than {MaxAddresses} addresses");
        }

        var result = new List<IPAddress>((int)(to - from + 1));
        var bytes = new byte[4];
        for (var value = from; ; value++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            result.Add(new IPAddress(bytes));
            if (value == to)
            {
                break;
            }
        }

        return result;
    }
}

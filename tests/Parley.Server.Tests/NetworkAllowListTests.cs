using System.Net;
using Parley.Server.Observability;

namespace Parley.Server.Tests;

/// <summary>Who may read <c>/metrics</c>: <see cref="NetworkAllowList"/> and the validation of Metrics:AllowedNetworks.</summary>
[Trait("Store", "Independent")]
public sealed class NetworkAllowListTests
{
    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.10.20.30", true)]
    [InlineData("::1", true)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("10.0.0.1", false)]
    [InlineData("192.168.1.20", false)]
    [InlineData("203.0.113.7", false)]
    [InlineData("::ffff:10.0.0.1", false)]
    [InlineData("2001:db8::1", false)]
    public void Allows_NoNetworksConfigured_LoopbackOnly(string address, bool allowed)
    {
        var list = new NetworkAllowList([]);

        Assert.Equal(allowed, list.Allows(IPAddress.Parse(address)));
    }

    [Theory]
    [InlineData("10.1.2.3", true)]
    [InlineData("::ffff:10.200.0.9", true)]
    [InlineData("192.0.2.15", true)]
    [InlineData("192.0.2.16", false)]
    [InlineData("fd00::42", true)]
    [InlineData("fe80::1", false)]
    [InlineData("127.0.0.1", false)]
    [InlineData("::1", false)]
    public void Allows_ConfiguredNetworks_ReplaceTheLoopbackDefault(string address, bool allowed)
    {
        var list = new NetworkAllowList(["10.0.0.0/8", " 192.0.2.15 ", "fd00::/8"]);

        Assert.Equal(allowed, list.Allows(IPAddress.Parse(address)));
    }

    [Theory]
    [InlineData("::ffff:192.0.2.2", "192.0.2.2", true)] // as a dual-stack socket's address shows in the log
    [InlineData("::ffff:192.0.2.2", "::ffff:192.0.2.2", true)]
    [InlineData("::ffff:192.0.2.0/120", "192.0.2.77", true)]
    [InlineData("::ffff:192.0.2.0/120", "192.0.3.1", false)]
    public void Allows_AnIPv4MappedEntry_MatchesThatIPv4Client(string entry, string address, bool allowed)
    {
        // The client is matched by its IPv4 address: an entry left in the mapped form never matched it.
        Assert.Equal(allowed, new NetworkAllowList([entry]).Allows(IPAddress.Parse(address)));
    }

    [Fact]
    public void Allows_NoAddress_Refused()
    {
        Assert.False(new NetworkAllowList([]).Allows(null));
        Assert.False(new NetworkAllowList(["0.0.0.0/0", "::/0"]).Allows(null));
    }

    [Theory]
    [InlineData("10.0.0.0/8", true)]
    [InlineData("0.0.0.0/0", true)]
    [InlineData("::/0", true)]
    [InlineData("2001:db8::/32", true)]
    [InlineData("192.0.2.1", true)]
    [InlineData("::1", true)]
    [InlineData("10.0.0.1/8", false)]
    [InlineData("10.0.0.0/33", false)]
    [InlineData("localhost", false)]
    [InlineData("", false)]
    public void TryParseNetwork_CidrOrASingleAddress(string text, bool valid)
    {
        Assert.Equal(valid, NetworkAllowList.TryParseNetwork(text, out _));
    }

    [Fact]
    public void Validator_NamesEachEntryThatIsNotANetwork()
    {
        var result = new MetricsOptionsValidator().Validate(null, new MetricsOptions { AllowedNetworks = ["10.0.0.0/8", "10.0.0.1/8", "intranet"] });

        Assert.True(result.Failed);
        Assert.Equal(2, result.Failures!.Count());
        Assert.StartsWith("Metrics:AllowedNetworks:1 is '10.0.0.1/8'; expected a network in CIDR notation", result.Failures!.First(), StringComparison.Ordinal);
        Assert.StartsWith("Metrics:AllowedNetworks:2 is 'intranet';", result.Failures!.Last(), StringComparison.Ordinal);
        Assert.True(new MetricsOptionsValidator().Validate(null, new MetricsOptions()).Succeeded);
    }
}

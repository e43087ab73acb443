using Parley.Bench.Options;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class AddressListTests
{
    [Fact]
    public void Parse_Range_IsInclusive()
    {
        var addresses = AddressList.Parse("127.0.0.2-127.0.0.20");

        Assert.Equal(19, addresses.Count);
        Assert.Equal("127.0.0.2", addresses[0].ToString());
        Assert.Equal("127.0.0.20", addresses[^1].ToString());
    }

    [Fact]
    public void Parse_RangeAcrossAnOctet_Continues()
    {
        var addresses = AddressList.Parse("127.0.0.254-127.0.1.1");

        Assert.Equal(["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"], addresses.Select(a => a.ToString()));
    }

    [Fact]
    public void Parse_Count_StartsAt127002()
    {
        var addresses = AddressList.Parse("3");

        Assert.Equal(["127.0.0.2", "127.0.0.3", "127.0.0.4"], addresses.Select(a => a.ToString()));
    }

    [Fact]
    public void Parse_ListOfAddressesAndRanges_KeepsTheirOrder()
    {
        var addresses = AddressList.Parse("127.0.0.9, 127.0.0.2-127.0.0.3,::1");

        Assert.Equal(["127.0.0.9", "127.0.0.2", "127.0.0.3", "::1"], addresses.Select(a => a.ToString()));
    }

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("255")]
    [InlineData("127.0.0.5-127.0.0.2")]
    [InlineData("127.0.0.1-::1")]
    [InlineData("localhost")]
    [InlineData("10.0.0.0-10.1.0.0")]
    public void Parse_Invalid_Throws(string text) => Assert.Throws<FormatException>(() => AddressList.Parse(text));
}

using Parley.Bench.Client;
using Parley.Bench.Options;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class IdentitiesTests
{
    private static readonly Uri[] Servers = [new("http://a:1/"), new("http://b:2/"), new("http://c:3/")];

    private static string[] PairServers(Placement placement, int conversation)
    {
        var identities = new Identities(new BenchOptions { Scenario = ScenarioKind.Chat, Urls = Servers, Placement = placement, RunId = "r" });
        return [.. Enumerable.Range(0, 2).Select(m => identities.Create("u", conversation * 2 + m, conversation).Server.ToString())];
    }

    [Fact]
    public void Create_ByUsers_PutsTheMembersOfAPairOnDifferentServers()
    {
        for (var c = 0; c < 6; c++)
        {
            var servers = PairServers(Placement.Users, c);
            Assert.NotEqual(servers[0], servers[1]);
        }
    }

    [Fact]
    public void Create_ByConversations_PutsAConversationOnOneServer_AndSpreadsConversationsRoundRobin()
    {
        var perConversation = Enumerable.Range(0, 6).Select(c => PairServers(Placement.Conversations, c)).ToList();

        Assert.All(perConversation, servers => Assert.Equal(servers[0], servers[1]));
        Assert.Equal(["http://a:1/", "http://b:2/", "http://c:3/", "http://a:1/", "http://b:2/", "http://c:3/"], perConversation.Select(s => s[0]));
    }

    [Fact]
    public void Create_WithoutAConversation_PlacesByUserEvenByConversations()
    {
        var identities = new Identities(new BenchOptions { Scenario = ScenarioKind.Reconnect, Urls = Servers, Placement = Placement.Conversations, RunId = "r" });

        Assert.Equal(["http://a:1/", "http://b:2/", "http://c:3/"], Enumerable.Range(0, 3).Select(i => identities.Create("d", i).Server.ToString()));
    }
}

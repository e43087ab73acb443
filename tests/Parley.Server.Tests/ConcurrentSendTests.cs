using System.Net;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>One sequence per conversation: concurrent sends take contiguous seqs, with no gaps or duplicates.</summary>
public sealed class ConcurrentSendTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Send_FiftyInParallelFromSeveralMembers_TakeExactlySeqs2To51InHistoryOrder()
    {
        string[] users = ["alice", "bob", "carol", "dave"];
        var clients = users.Select(_factory.BoundedApi).ToList();
        try
        {
            var group = await clients[0].CreateGroupAsync("busy", "bob", "carol", "dave");

            var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
                clients[i % clients.Count].PostMessageAsync(MessagingKit.TextBody(group.Id, $"parallel {i}", $"p-{i}"))));
            var sent = new List<Message>();
            foreach (var response in responses)
            {
                sent.Add(await ParleyApi.ReadAsync<Message>(response, HttpStatusCode.Created));
            }

            // Creation is seq 1 and nothing else happened: the messages are exactly 2..51.
            Assert.Equal(Enumerable.Range(2, 50).Select(i => (long)i), sent.Select(m => m.Seq).Order());
            var history = await clients[1].WholeHistoryAsync(group.Id);
            Assert.Equal(sent.OrderBy(m => m.Seq).Select(m => m.Id), history.Select(m => m.Id));
            Assert.Equal(Enumerable.Range(2, 50).Select(i => (long)i), history.Select(m => m.Seq));
            Assert.Equal(51, (await clients[2].GetConversationAsync(group.Id)).LastSeq);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task Send_ParallelIntoTwoConversations_KeepsEachSequenceContiguous()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var first = await alice.CreateGroupAsync("one", "bob");
        var second = await alice.CreateDirectAsync("bob");

        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(i =>
            (i % 2 == 0 ? alice : bob).PostMessageAsync(MessagingKit.TextBody(i % 4 < 2 ? first.Id : second.Id, $"m{i}"))));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.Created, r.StatusCode));
        foreach (var conversation in new[] { first.Id, second.Id })
        {
            var history = await alice.WholeHistoryAsync(conversation);
            Assert.Equal(Enumerable.Range(2, 20).Select(i => (long)i), history.Select(m => m.Seq));
        }
    }
}

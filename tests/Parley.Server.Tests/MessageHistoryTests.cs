using System.Net;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>GET /api/v1/conversations/{id}/messages (paging by seq) and GET /api/v1/messages/{id}.</summary>
public sealed class MessageHistoryTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task List_WithoutCursor_ReturnsTheNewestPageNewestFirst()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, sent) = await DirectWithMessagesAsync(alice, 7); // seqs 2..8

        var page = await alice.ListMessagesAsync(conversation, "?limit=3");

        Assert.Equal([8L, 7L, 6L], page.Messages.Select(m => m.Seq));
        Assert.Equal(sent[^1].Id, page.Messages[0].Id);
        Assert.True(page.HasMore);
        Assert.Equal(6, page.NextCursor);
    }

    [Fact]
    public async Task List_Before_PagesBackwardsNewestFirstUntilTheStart()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 7); // seqs 2..8

        var second = await alice.ListMessagesAsync(conversation, "?limit=3&before=6");
        var third = await alice.ListMessagesAsync(conversation, "?limit=3&before=3");

        Assert.Equal([5L, 4L, 3L], second.Messages.Select(m => m.Seq));
        Assert.True(second.HasMore);
        Assert.Equal(3, second.NextCursor);
        Assert.Equal([2L], third.Messages.Select(m => m.Seq));
        Assert.False(third.HasMore);
        Assert.Null(third.NextCursor);
    }

    [Fact]
    public async Task List_After_PagesForwardOldestFirstUntilTheEnd()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 7); // seqs 2..8

        var first = await alice.ListMessagesAsync(conversation, "?limit=3&after=0");
        var second = await alice.ListMessagesAsync(conversation, "?limit=3&after=4");
        var last = await alice.ListMessagesAsync(conversation, "?limit=3&after=7");
        var beyond = await alice.ListMessagesAsync(conversation, "?limit=3&after=8");

        Assert.Equal([2L, 3L, 4L], first.Messages.Select(m => m.Seq));
        Assert.True(first.HasMore);
        Assert.Equal(4, first.NextCursor);
        Assert.Equal([5L, 6L, 7L], second.Messages.Select(m => m.Seq));
        Assert.Equal(7, second.NextCursor);
        Assert.Equal([8L], last.Messages.Select(m => m.Seq));
        Assert.False(last.HasMore);
        Assert.Null(last.NextCursor);
        Assert.Empty(beyond.Messages);
        Assert.False(beyond.HasMore);
        Assert.Null(beyond.NextCursor);
    }

    [Fact]
    public async Task List_LastPageExactlyFull_HasNoMoreAndNoCursor()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 6); // seqs 2..7

        var newest = await alice.ListMessagesAsync(conversation, "?limit=3");
        var oldest = await alice.ListMessagesAsync(conversation, "?limit=3&before=5");
        var forward = await alice.ListMessagesAsync(conversation, "?limit=3&after=4");

        Assert.Equal(5, newest.NextCursor);
        Assert.Equal([4L, 3L, 2L], oldest.Messages.Select(m => m.Seq));
        Assert.False(oldest.HasMore);
        Assert.Null(oldest.NextCursor);
        Assert.Equal([5L, 6L, 7L], forward.Messages.Select(m => m.Seq));
        Assert.False(forward.HasMore);
        Assert.Null(forward.NextCursor);
    }

    [Fact]
    public async Task List_EmptyConversation_ReturnsNoMessagesAndNoCursor()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");

        var page = await alice.ListMessagesAsync(conversation.Id);

        Assert.Empty(page.Messages);
        Assert.False(page.HasMore);
        Assert.Null(page.NextCursor);
    }

    [Fact]
    public async Task List_DefaultLimit_Is50AndAtMost100IsAllowed()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 105); // seqs 2..106

        var byDefault = await alice.ListMessagesAsync(conversation);
        var max = await alice.ListMessagesAsync(conversation, "?limit=100");

        Assert.Equal(50, byDefault.Messages.Count);
        Assert.Equal(106, byDefault.Messages[0].Seq);
        Assert.True(byDefault.HasMore);
        Assert.Equal(57, byDefault.NextCursor);
        Assert.Equal(100, max.Messages.Count);
        Assert.True(max.HasMore);
        Assert.Equal(7, max.NextCursor);
    }

    [Theory]
    [InlineData("?limit=101", "limit")]
    [InlineData("?limit=0", "limit")]
    [InlineData("?limit=-1", "limit")]
    [InlineData("?limit=abc", "limit")]
    [InlineData("?limit=1.5", "limit")]
    [InlineData("?limit=99999999999999999999", "limit")]
    [InlineData("?before=abc", "before")]
    [InlineData("?before=0", "before")]
    [InlineData("?after=-1", "after")]
    [InlineData("?after=x1", "after")]
    public async Task List_InvalidQuery_Returns400OnTheParameter(string query, string field)
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");

        var problem = await ParleyApi.ProblemAsync(
            await alice.GetAsync($"/api/v1/conversations/{conversation.Id}/messages{query}"), HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal([field], problem.ErrorFields);
    }

    [Fact]
    public async Task List_BeforeAndAfterTogether_Returns400()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 3);

        var problem = await ParleyApi.ProblemAsync(
            await alice.GetAsync($"/api/v1/conversations/{conversation}/messages?before=4&after=2"), HttpStatusCode.BadRequest, "validation_failed");

        Assert.NotEmpty(problem.ErrorFields);
    }

    [Fact]
    public async Task List_WalkingTheWholeHistoryEitherWay_YieldsEveryMessageOnceInOrder()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = (await alice.CreateGroupAsync("walk", "bob")).Id;
        var sent = new List<Message>();
        for (var i = 0; i < 23; i++)
        {
            var sender = i % 3 == 0 ? bob : alice;
            var message = await sender.SendTextAsync(conversation, $"m{i}");
            sent.Add(message);
            // Edits and deletes take seqs of their own, so message seqs have gaps the cursor must step over.
            if (i % 5 == 1)
            {
                await sender.EditAsync(message.Id, $"m{i} (edited)");
            }

            if (i % 7 == 3)
            {
                await sender.DeleteMessageAsync(message.Id);
            }
        }

        foreach (var limit in new[] { 1, 4, 5, 23, 100 })
        {
            var backwards = await WalkAsync(alice, conversation, "before", limit);
            var forwards = await WalkAsync(bob, conversation, "after", limit);

            Assert.Equal(sent.Select(m => m.Id).Reverse(), backwards.Select(m => m.Id));
            Assert.Equal(sent.Select(m => m.Id), forwards.Select(m => m.Id));
        }

        var history = await alice.WholeHistoryAsync(conversation);
        Assert.Equal("m1 (edited)", history[1].Content);
        Assert.Null(history[3].Content);
        Assert.NotNull(history[3].DeletedAt);
    }

    [Fact]
    public async Task List_DeletedMessage_AppearsAsATombstoneInPlace()
    {
        using var alice = _factory.BoundedApi("alice");
        var (conversation, sent) = await DirectWithMessagesAsync(alice, 3);
        await alice.DeleteMessageAsync(sent[1].Id);

        var page = await alice.ListMessagesAsync(conversation);

        Assert.Equal(sent.Select(m => m.Id).Reverse(), page.Messages.Select(m => m.Id));
        var tombstone = page.Messages[1];
        Assert.Equal(sent[1].Seq, tombstone.Seq);
        Assert.Null(tombstone.Content);
        Assert.NotNull(tombstone.DeletedAt);
        Assert.Equal("alice", tombstone.SenderId);
    }

    [Fact]
    public async Task List_MemberAddedLater_SeesHistoryFromJoiningOnly()
    {
        using var alice = _factory.BoundedApi("alice");
        using var dave = _factory.BoundedApi("dave");
        var group = await alice.CreateGroupAsync("team", "bob");
        var early = await alice.SendTextAsync(group.Id, "before dave");
        await ParleyApi.ReadAsync<Protocol.Conversation>(await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "dave" } }));
        var late = await alice.SendTextAsync(group.Id, "after dave");

        var history = await dave.WholeHistoryAsync(group.Id);
        var newest = await dave.ListMessagesAsync(group.Id);
        var older = await dave.ListMessagesAsync(group.Id, $"?before={late.Seq}");

        Assert.Equal(late.Id, Assert.Single(history).Id);
        Assert.Equal(late.Id, Assert.Single(newest.Messages).Id);
        Assert.False(newest.HasMore);
        Assert.Empty(older.Messages);
        await ParleyApi.ProblemAsync(await dave.GetAsync($"/api/v1/messages/{early.Id}"), HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task List_OutsiderOrUnknownConversation_Returns404AndMalformedIdReturns400()
    {
        using var alice = _factory.BoundedApi("alice");
        using var mallory = _factory.BoundedApi("mallory");
        var (conversation, _) = await DirectWithMessagesAsync(alice, 2);

        var outsider = await ParleyApi.ProblemAsync(await mallory.GetAsync($"/api/v1/conversations/{conversation}/messages"), HttpStatusCode.NotFound, "not_found");
        var unknown = await ParleyApi.ProblemAsync(
            await mallory.GetAsync($"/api/v1/conversations/{Guid.CreateVersion7()}/messages"), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.GetAsync("/api/v1/conversations/nope/messages"), HttpStatusCode.BadRequest, "invalid_id");

        Assert.Equal(unknown.Detail, outsider.Detail);
    }

    [Fact]
    public async Task Get_Member_Returns200WithTheMessage()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var (_, sent) = await DirectWithMessagesAsync(alice, 1);

        var fetched = await bob.GetMessageAsync(sent[0].Id);

        Assert.Equal(sent[0], fetched);
    }

    [Fact]
    public async Task Get_OutsiderOrUnknownId_Returns404()
    {
        using var alice = _factory.BoundedApi("alice");
        using var mallory = _factory.BoundedApi("mallory");
        var (_, sent) = await DirectWithMessagesAsync(alice, 1);

        var outsider = await ParleyApi.ProblemAsync(await mallory.GetAsync($"/api/v1/messages/{sent[0].Id}"), HttpStatusCode.NotFound, "not_found");
        var unknown = await ParleyApi.ProblemAsync(await alice.GetAsync($"/api/v1/messages/{Guid.CreateVersion7()}"), HttpStatusCode.NotFound, "not_found");

        Assert.Equal(unknown.Detail, outsider.Detail);
    }

    [Theory]
    [InlineData("not-a-uuid")]
    [InlineData("12345")]
    [InlineData("0197a0a0000070008000000000000000")]
    [InlineData("{0197a0a0-0000-7000-8000-000000000000}")]
    public async Task Get_MalformedId_Returns400InvalidId(string id)
    {
        using var alice = _factory.BoundedApi("alice");

        await ParleyApi.ProblemAsync(await alice.GetAsync($"/api/v1/messages/{Uri.EscapeDataString(id)}"), HttpStatusCode.BadRequest, "invalid_id");
    }

    private static async Task<(Guid Conversation, List<Message> Sent)> DirectWithMessagesAsync(ParleyApi alice, int count)
    {
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = new List<Message>();
        for (var i = 0; i < count; i++)
        {
            sent.Add(await alice.SendTextAsync(conversation.Id, $"message {i}"));
        }

        Assert.Equal(Enumerable.Range(2, count).Select(i => (long)i), sent.Select(m => m.Seq));
        return (conversation.Id, sent);
    }

    /// <summary>Follows next_cursor in one direction; asserts page size, order inside each page and the end markers.</summary>
    private static async Task<List<Message>> WalkAsync(ParleyApi api, Guid conversation, string direction, int limit)
    {
        var all = new List<Message>();
        var query = direction == "after" ? $"?after=0&limit={limit}" : $"?limit={limit}";
        while (true)
        {
            var page = await api.ListMessagesAsync(conversation, query);
            Assert.InRange(page.Messages.Count, 0, limit);
            var seqs = page.Messages.Select(m => m.Seq).ToList();
            Assert.Equal(direction == "after" ? seqs.Order() : seqs.OrderDescending(), seqs);
            all.AddRange(page.Messages);
            if (page.NextCursor is not { } next)
            {
                Assert.False(page.HasMore);
                return all;
            }

            Assert.True(page.HasMore);
            Assert.Equal(limit, page.Messages.Count);
            Assert.Equal(page.Messages[^1].Seq, next);
            Assert.True(all.Count <= 1000, "The walk does not end.");
            query = $"?{direction}={next}&limit={limit}";
        }
    }
}

using System.Net;
using System.Text.Json;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>POST /api/v1/messages/{id}/read: the read watermark moves forward only, and read implies delivered.</summary>
public sealed class ReadReceiptTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Read_ReturnsTheCallersReadState()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");

        var state = await bob.MarkReadAsync(first.Id);

        var names = state.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal);
        Assert.Equal(
            new[] { "conversation_id", "delivered_up_to_seq", "last_read_message_id", "read_up_to_seq", "unread_count", "user_id" }, names);
        Assert.Equal(conversation.Id, state.GetProperty("conversation_id").GetGuid());
        Assert.Equal("bob", state.GetProperty("user_id").GetString());
        Assert.Equal(first.Id, state.GetProperty("last_read_message_id").GetGuid());
        Assert.Equal(first.Seq, state.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(2, state.GetProperty("unread_count").GetInt32());

        var seen = await bob.GetConversationAsync(conversation.Id);
        Assert.Equal(first.Seq, seen.ReadUpToSeq);
        Assert.Equal(first.Id, seen.LastReadMessageId);
        Assert.Equal(2, seen.UnreadCount);
    }

    [Fact]
    public async Task Read_ImpliesDelivered()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");

        // bob has no socket: nothing was delivered to him before he read.
        var state = await bob.MarkReadAsync(second.Id);

        Assert.Equal(second.Seq, state.GetProperty("read_up_to_seq").GetInt64());
        Assert.True(
            state.GetProperty("delivered_up_to_seq").GetInt64() >= state.GetProperty("read_up_to_seq").GetInt64(),
            $"delivered behind read: {state}");
        Assert.Equal(0, state.GetProperty("unread_count").GetInt32());
    }

    [Fact]
    public async Task Read_OlderMessage_Returns200AndLeavesTheWatermark()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");
        var ahead = await bob.MarkReadAsync(second.Id);

        var again = await bob.MarkReadAsync(first.Id);
        var same = await bob.MarkReadAsync(second.Id);

        Assert.Equal(ahead.ToString(), again.ToString());
        Assert.Equal(ahead.ToString(), same.ToString());
        Assert.Equal(second.Id, again.GetProperty("last_read_message_id").GetGuid());
        Assert.Equal(second.Seq, again.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(1, again.GetProperty("unread_count").GetInt32());
        var seen = await bob.GetConversationAsync(conversation.Id);
        Assert.Equal(second.Seq, seen.ReadUpToSeq);
        Assert.Equal(1, seen.UnreadCount);
    }

    [Fact]
    public async Task Read_OwnMessage_IsAllowedAndCountsNothing()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "mine");

        var state = await alice.MarkReadAsync(sent.Id);

        Assert.Equal(sent.Seq, state.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(0, state.GetProperty("unread_count").GetInt32());
    }

    [Fact]
    public async Task Read_DeletedMessage_MovesTheWatermarkToIt()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "one");
        var deleted = await alice.SendTextAsync(conversation.Id, "two");
        await alice.DeleteMessageAsync(deleted.Id);

        var state = await bob.MarkReadAsync(deleted.Id);

        Assert.Equal(deleted.Seq, state.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(0, state.GetProperty("unread_count").GetInt32());
    }

    [Fact]
    public async Task Read_OutsiderUnknownOrBeforeJoining_Returns404()
    {
        using var alice = _factory.BoundedApi("alice");
        using var mallory = _factory.BoundedApi("mallory");
        using var dave = _factory.BoundedApi("dave");
        var group = await alice.CreateGroupAsync("team", "bob");
        var early = await alice.SendTextAsync(group.Id, "before dave");
        await ParleyApi.ReadAsync<JsonElement>(await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "dave" } }));

        await ParleyApi.ProblemAsync(await mallory.PostAsync($"/api/v1/messages/{early.Id}/read", null), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.PostAsync($"/api/v1/messages/{Guid.CreateVersion7()}/read", null), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await dave.PostAsync($"/api/v1/messages/{early.Id}/read", null), HttpStatusCode.NotFound, "not_found");

        Assert.Equal(0, (await dave.GetConversationAsync(group.Id)).UnreadCount);
    }

    [Fact]
    public async Task Read_ByTheServiceRole_Returns404ConversationNotFound()
    {
        // The service role sees every message but has no read position: the store refuses it as a non-member, and the
        // answer is the non-member's (the message-level checks passed), not a 404 for the message.
        using var alice = _factory.BoundedApi("alice");
        using var service = _factory.BoundedServiceApi();
        var conversation = await alice.CreateDirectAsync("bob");
        var message = await alice.SendTextAsync(conversation.Id, "hello");

        var problem = await ParleyApi.ProblemAsync(await service.PostAsync($"/api/v1/messages/{message.Id}/read", null), HttpStatusCode.NotFound, "not_found");

        Assert.Equal("Conversation was not found.", problem.Detail);
    }

    [Theory]
    [InlineData("nope")]
    [InlineData("0197a0a0000070008000000000000000")]
    public async Task Read_MalformedId_Returns400InvalidId(string id)
    {
        using var alice = _factory.BoundedApi("alice");

        var problem = await ParleyApi.ProblemAsync(await alice.PostAsync($"/api/v1/messages/{id}/read", null), HttpStatusCode.BadRequest, "invalid_id");
        Assert.Equal(["id"], problem.ErrorFields); // the path's name, as on every endpoint (the frame's is message_id)
    }

    [Fact]
    public async Task Read_ByOneMember_LeavesTheOthersStateAlone()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        using var carol = _factory.BoundedApi("carol");
        var group = await alice.CreateGroupAsync("team", "bob", "carol");
        await alice.SendTextAsync(group.Id, "one");
        var second = await alice.SendTextAsync(group.Id, "two");

        await bob.MarkReadAsync(second.Id);

        var carols = await carol.GetConversationAsync(group.Id);
        Assert.Equal(2, carols.UnreadCount);
        Assert.Equal(0, carols.ReadUpToSeq);
        Assert.Null(carols.LastReadMessageId);
        Assert.Equal(0, (await bob.GetConversationAsync(group.Id)).UnreadCount);
    }
}

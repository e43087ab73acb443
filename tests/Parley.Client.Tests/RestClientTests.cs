using System.Net;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary><see cref="ParleyClient"/> against the real server over HTTP: every endpoint of docs/api.md, and errors as typed exceptions.</summary>
public sealed class RestClientTests(ServerFactory server) : IClassFixture<ServerFactory>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string NewUser(string name) => $"{name}-{Guid.NewGuid():N}"[..20];

    [Fact]
    public async Task CreateConversationAsync_DirectTwice_ReturnsTheSameConversation()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        using var other = server.Client(bob);

        var created = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var again = await other.CreateConversationAsync(CreateConversationRequest.Direct(alice), Ct);

        Assert.Equal(created.Id, again.Id);
        Assert.Equal(ConversationTypes.Direct, created.Type);
        Assert.Equal([alice, bob], created.Participants.Select(p => p.UserId).Order());
        Assert.Equal(created.Id, (await other.GetConversationAsync(created.Id, Ct)).Id);
    }

    [Fact]
    public async Task Participants_AddPromoteRemove_GroupReflectsEachChange()
    {
        var (alice, bob, carol) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        using var client = server.Client(alice);
        var group = await client.CreateConversationAsync(CreateConversationRequest.Group("Weekend", bob), Ct);

        var added = await client.AddParticipantsAsync(group.Id, [carol], Ct);
        var promoted = await client.UpdateParticipantAsync(group.Id, carol, ParticipantRoles.Admin, Ct);
        await client.RemoveParticipantAsync(group.Id, bob, Ct);
        var after = await client.GetConversationAsync(group.Id, Ct);

        Assert.Equal("Weekend", group.Name);
        Assert.Equal(3, added.Participants.Count);
        Assert.Equal(ParticipantRoles.Admin, promoted.Role);
        Assert.Equal([alice, carol], after.Participants.Select(p => p.UserId).Order());
        Assert.Equal(ParticipantRoles.Owner, after.Participants.Single(p => p.UserId == alice).Role);
    }

    [Fact]
    public async Task Messages_SendEditDelete_HistoryEditsAndTombstone()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var sent = await client.SendMessageAsync(
            SendMessageRequest.Text(conversation.Id, "Hello, @bob") with { Mentions = [new Mention(bob, 7, 4)] }, Ct);
        var edited = await client.EditMessageAsync(sent.Id, new EditMessageRequest("Hello again"), Ct);
        var edits = await client.GetMessageEditsAsync(sent.Id, Ct);
        var deleted = await client.DeleteMessageAsync(sent.Id, Ct);
        var fetched = await client.GetMessageAsync(sent.Id, Ct);

        Assert.Equal((alice, MessageTypes.Text, 2L), (sent.SenderId, sent.MessageType, sent.Seq));
        Assert.Equal(new Mention(bob, 7, 4), Assert.Single(sent.Mentions!));
        Assert.Equal("Hello again", edited.Content);
        Assert.NotNull(edited.EditedAt);
        Assert.Equal("Hello, @bob", Assert.Single(edits.Edits).Content);
        Assert.Null(deleted.Content);
        Assert.NotNull(fetched.DeletedAt);
    }

    [Fact]
    public async Task SendMessageAsync_SameClientMessageId_ReturnsTheOriginalAndADifferentBodyConflicts()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var first = await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "once", "c-1"), Ct);
        var retry = await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "once", "c-1"), Ct);
        var conflict = await Assert.ThrowsAsync<ParleyApiException>(
            () => client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "twice", "c-1"), Ct));

        Assert.Equal(first.Id, retry.Id);
        Assert.Equal((HttpStatusCode.Conflict, ParleyErrorCodes.IdempotencyConflict), (conflict.StatusCode, conflict.Code));
        Assert.Single((await client.ListMessagesAsync(conversation.Id, cancellationToken: Ct)).Messages);
    }

    [Fact]
    public async Task ListMessagesAsync_BeforeAndAfter_PagesInBothDirections()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        for (var i = 1; i <= 5; i++)
        {
            await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"m{i}"), Ct);
        }

        var newest = await client.ListMessagesAsync(conversation.Id, limit: 2, cancellationToken: Ct);
        var older = await client.ListMessagesAsync(conversation.Id, limit: 2, before: newest.NextCursor, cancellationToken: Ct);
        var oldestFirst = await client.ListMessagesAsync(conversation.Id, after: 0, cancellationToken: Ct);

        Assert.Equal(["m5", "m4"], newest.Messages.Select(m => m.Content));
        Assert.True(newest.HasMore);
        Assert.Equal(["m3", "m2"], older.Messages.Select(m => m.Content));
        Assert.Equal(["m1", "m2", "m3", "m4", "m5"], oldestFirst.Messages.Select(m => m.Content));
        Assert.False(oldestFirst.HasMore);
    }

    [Fact]
    public async Task MarkReadAsync_RecipientReads_UnreadCountFalls()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        using var reader = server.Client(bob);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "one"), Ct);
        var second = await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "two"), Ct);
        Assert.Equal(2, (await reader.GetConversationAsync(conversation.Id, Ct)).UnreadCount);

        var state = await reader.MarkReadAsync(second.Id, Ct);

        Assert.Equal((bob, second.Seq, 0), (state.UserId, state.ReadUpToSeq, state.UnreadCount));
        Assert.Equal(0, (await reader.GetConversationAsync(conversation.Id, Ct)).UnreadCount);
    }

    [Fact]
    public async Task ListConversationsAsync_MoreThanAPage_FollowsNextCursor()
    {
        var alice = NewUser("alice");
        using var client = server.Client(alice);
        for (var i = 0; i < 3; i++)
        {
            await client.CreateConversationAsync(CreateConversationRequest.Direct(NewUser("peer")), Ct);
        }

        var first = await client.ListConversationsAsync(limit: 2, cancellationToken: Ct);
        var second = await client.ListConversationsAsync(limit: 2, cursor: first.NextCursor, cancellationToken: Ct);

        Assert.Equal(2, first.Conversations.Count);
        Assert.NotNull(first.NextCursor);
        Assert.Single(second.Conversations);
        Assert.Null(second.NextCursor);
    }

    [Fact]
    public async Task SetTypingAsync_Member_Accepted()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        await client.SetTypingAsync(conversation.Id, true, Ct);
        await client.SetTypingAsync(conversation.Id, false, Ct);
        await Assert.ThrowsAsync<ParleyApiException>(() => server.Client(NewUser("eve")).SetTypingAsync(conversation.Id, true, Ct));
    }

    [Fact]
    public async Task GetConfigAsync_Always_ReturnsTheLimits()
    {
        using var client = server.Client(NewUser("alice"));

        var config = await client.GetConfigAsync(Ct);

        Assert.Equal(4096, config.MaxContentLength);
        Assert.True(config.HeartbeatIntervalMs > 0);
    }

    [Fact]
    public async Task GetConversationAsync_NotAMember_ThrowsNotFound()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var error = await Assert.ThrowsAsync<ParleyApiException>(() => server.Client(NewUser("eve")).GetConversationAsync(conversation.Id, Ct));

        Assert.Equal((HttpStatusCode.NotFound, ParleyErrorCodes.NotFound), (error.StatusCode, error.Code));
    }

    [Fact]
    public async Task SendMessageAsync_TextWithoutContent_ThrowsValidationFailedWithTheField()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var error = await Assert.ThrowsAsync<ParleyApiException>(
            () => client.SendMessageAsync(new SendMessageRequest { ConversationId = conversation.Id }, Ct));

        Assert.Equal((HttpStatusCode.BadRequest, ParleyErrorCodes.ValidationFailed), (error.StatusCode, error.Code));
        Assert.Contains("content", error.Errors.Keys);
        Assert.False(string.IsNullOrEmpty(error.Detail));
    }

    [Fact]
    public async Task AnyCall_TokenSignedWithAnotherKey_ThrowsUnauthenticated()
    {
        using var client = new ParleyClient(server.BaseAddress, ParleyCredentials.Bearer(ServerFactory.Token("alice", key: new string('k', 48))));

        var error = await Assert.ThrowsAsync<ParleyApiException>(() => client.ListConversationsAsync(cancellationToken: Ct));

        Assert.Equal((HttpStatusCode.Unauthorized, ParleyErrorCodes.Unauthenticated), (error.StatusCode, error.Code));
    }

    [Fact]
    public async Task ServiceClient_CreatesAGroupOnBehalfOfAUser_ThatUserOwnsIt()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var service = server.ServiceClient();

        var group = await service.CreateConversationAsync(
            new CreateConversationRequest { Type = ConversationTypes.Group, ParticipantIds = [alice, bob], Name = "Team", OwnerId = alice }, Ct);
        var system = await service.SendMessageAsync(new SendMessageRequest { ConversationId = group.Id, MessageType = MessageTypes.System, Content = "welcome" }, Ct);

        Assert.Equal(ParticipantRoles.Owner, group.Participants.Single(p => p.UserId == alice).Role);
        Assert.Equal(MessageTypes.System, system.MessageType);
    }

    [Fact]
    public async Task SyncAsync_FromACursor_ReturnsTheEventsAfterItInOrder()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var client = server.Client(alice);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var cursor = await client.GetSyncCursorAsync(Ct);
        var sent = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            sent.Add((await client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"m{i}"), Ct)).Id);
        }

        // The sequencer positions events a few milliseconds after commit.
        var received = new List<MessageCreatedEvent>();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (received.Count < 3 && DateTime.UtcNow < deadline)
        {
            var page = await client.SyncAsync(cursor, limit: 2, Ct);
            received.AddRange(page.Events.OfType<MessageCreatedEvent>());
            cursor = page.NextCursor;
            if (!page.HasMore && received.Count < 3)
            {
                await Task.Delay(20, Ct);
            }
        }

        Assert.Equal(sent, received.Select(e => e.Message.Id));
        Assert.Equal([2L, 3L, 4L], received.Select(e => e.Seq));
    }

    [Fact]
    public async Task SyncAsync_MalformedCursor_ThrowsInvalidCursor()
    {
        using var client = server.Client(NewUser("alice"));

        var error = await Assert.ThrowsAsync<ParleyApiException>(() => client.SyncAsync("not-a-cursor", cancellationToken: Ct));

        Assert.Equal((HttpStatusCode.BadRequest, ParleyErrorCodes.InvalidCursor), (error.StatusCode, error.Code));
    }
}

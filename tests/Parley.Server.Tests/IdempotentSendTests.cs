using System.Net;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>client_message_id: a retried send returns the original instead of sending twice.</summary>
public sealed class IdempotentSendTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Send_RetryWithTheSameBody_Returns200WithTheOriginalAndSendsNothingNew()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var body = MessagingKit.TextBody(conversation.Id, "hello", "retry-1");
        var original = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.Created);

        var retry = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.OK);

        Assert.Equal(original, retry);
        Assert.Equal(original.Id, Assert.Single(await alice.WholeHistoryAsync(conversation.Id)).Id);
        var afterRetry = await alice.GetConversationAsync(conversation.Id);
        Assert.Equal(original.Seq, afterRetry.LastSeq); // no seq taken by the retry
        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
    }

    [Fact]
    public async Task Send_RetryOfAMediaMessageWithTheSameBody_Returns200()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateGroupAsync("team", "bob");
        var body = new
        {
            conversation_id = conversation.Id,
            message_type = "image",
            content = "@bob look",
            mentions = new[] { new { user_id = "bob", offset = 0, length = 4 } },
            media = new { url = "https://cdn.example.com/p.png", mime_type = "image/png", size_bytes = 42, width = 10, height = 20 },
            client_message_id = "img-1",
        };
        var original = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.Created);

        var retry = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.OK);

        Assert.Equal(original.Id, retry.Id);
        Assert.Single(await alice.WholeHistoryAsync(conversation.Id));
    }

    [Fact]
    public async Task Send_SameClientMessageIdWithADifferentBody_Returns409AndKeepsTheOriginal()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "hello", "dup-1");

        await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "something else", "dup-1")),
            HttpStatusCode.Conflict, "idempotency_conflict");

        var history = await alice.WholeHistoryAsync(conversation.Id);
        Assert.Equal("hello", Assert.Single(history).Content);
        Assert.Equal(original.Seq, (await alice.GetConversationAsync(conversation.Id)).LastSeq);
    }

    [Fact]
    public async Task Send_SameClientMessageIdWithADifferentType_Returns409()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "here", "dup-2");

        await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(new
            {
                conversation_id = conversation.Id, message_type = "location", content = "here", location = new { latitude = 1.0, longitude = 2.0 },
                client_message_id = "dup-2",
            }),
            HttpStatusCode.Conflict, "idempotency_conflict");
    }

    [Fact]
    public async Task Send_RetryAfterTheOriginalWasDeleted_Returns200WithTheTombstone()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var body = MessagingKit.TextBody(conversation.Id, "oops", "del-1");
        var original = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.Created);
        await alice.DeleteMessageAsync(original.Id);
        var lastSeq = (await alice.GetConversationAsync(conversation.Id)).LastSeq;

        var retry = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.OK);

        Assert.Equal(original.Id, retry.Id);
        Assert.Equal(original.Seq, retry.Seq);
        Assert.NotNull(retry.DeletedAt);
        Assert.Null(retry.Content);
        Assert.True(Assert.Single(await alice.WholeHistoryAsync(conversation.Id)).DeletedAt is not null);
        Assert.Equal(lastSeq, (await alice.GetConversationAsync(conversation.Id)).LastSeq);
    }

    [Fact]
    public async Task Send_RetryAfterTheOriginalWasEdited_Returns200WithTheMessageAsItIsNow()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var body = MessagingKit.TextBody(conversation.Id, "first words", "edit-1");
        var original = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.Created);
        // Another device of alice's edited it before this device's retry got through.
        var edited = await alice.EditAsync(original.Id, "second thoughts");

        var retry = await ParleyApi.ReadAsync<Message>(await alice.PostMessageAsync(body), HttpStatusCode.OK);

        Assert.Equal(edited, retry);
        Assert.Single(await alice.WholeHistoryAsync(conversation.Id));
    }

    [Fact]
    public async Task Send_SameClientMessageIdWithADifferentTypeAfterAnEdit_Returns409()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "here", "edit-2");
        await alice.EditAsync(original.Id, "there");

        await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(new
            {
                conversation_id = conversation.Id, message_type = "location", content = "here", location = new { latitude = 1.0, longitude = 2.0 },
                client_message_id = "edit-2",
            }),
            HttpStatusCode.Conflict, "idempotency_conflict");
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/not-allowed")]
    [InlineData("caf\u00e9")]
    [InlineData("x\n")]
    public async Task Send_InvalidClientMessageId_Returns400OnClientMessageId(string clientMessageId)
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");

        var problem = await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "hi", clientMessageId)), HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(["client_message_id"], problem.ErrorFields);
        Assert.Empty(await alice.WholeHistoryAsync(conversation.Id));
    }

    [Fact]
    public async Task Send_ClientMessageIdOf64CharactersIsAcceptedAnd65Rejected()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");

        var ok = await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "hi", "A.b_c:d-" + new string('9', 56)));
        var tooLong = await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "hi", new string('k', 65)));

        Assert.Equal(HttpStatusCode.Created, ok.StatusCode);
        var problem = await ParleyApi.ProblemAsync(tooLong, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["client_message_id"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_SameClientMessageIdFromAnotherUser_IsADifferentMessage()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");

        var fromAlice = await alice.SendTextAsync(conversation.Id, "hi", "same-id");
        var fromBob = await bob.SendTextAsync(conversation.Id, "hi", "same-id");

        Assert.NotEqual(fromAlice.Id, fromBob.Id);
        Assert.Equal("bob", fromBob.SenderId);
        Assert.Equal(2, (await alice.WholeHistoryAsync(conversation.Id)).Count);
    }

    [Fact]
    public async Task Send_SameClientMessageIdInAnotherConversation_IsADifferentMessage()
    {
        using var alice = _factory.BoundedApi("alice");
        var first = await alice.CreateDirectAsync("bob");
        var second = await alice.CreateDirectAsync("carol");

        var one = await alice.SendTextAsync(first.Id, "hi", "same-id");
        var two = await alice.SendTextAsync(second.Id, "hi", "same-id");

        Assert.NotEqual(one.Id, two.Id);
        Assert.Equal(second.Id, two.ConversationId);
        Assert.Single(await alice.WholeHistoryAsync(first.Id));
        Assert.Single(await alice.WholeHistoryAsync(second.Id));
    }

    [Fact]
    public async Task Send_ConcurrentRetries_CreateExactlyOneMessage()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var body = MessagingKit.TextBody(conversation.Id, "once", "race-1");

        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => alice.PostMessageAsync(body)));

        Assert.Equal(1, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        Assert.Equal(9, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        var ids = new HashSet<Guid>();
        foreach (var response in responses)
        {
            ids.Add((await ParleyApi.ReadAsync<Message>(response, HttpStatusCode.Created, HttpStatusCode.OK)).Id);
        }

        Assert.Equal(Assert.Single(await alice.WholeHistoryAsync(conversation.Id)).Id, Assert.Single(ids));
    }
}

using System.Net;
using System.Text.Json;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>PUT and DELETE /api/v1/messages/{id}, and the edit history of GET /api/v1/messages/{id}/edits.</summary>
public sealed class EditDeleteTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Edit_BySender_SetsEditedAtAndKeepsEarlierVersionsOldestFirst()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        var second = await alice.EditAsync(original.Id, "v2");
        var third = await alice.EditAsync(original.Id, "v3");

        Assert.Equal("v2", second.Content);
        Assert.NotNull(second.EditedAt);
        Assert.Equal("v3", third.Content);
        Assert.True(third.EditedAt >= second.EditedAt);
        Assert.Equal(original.Id, third.Id);
        Assert.Equal(original.Seq, third.Seq); // a message keeps the seq of its creation
        Assert.Equal(original.CreatedAt, third.CreatedAt);
        var fetched = await bob.GetMessageAsync(original.Id);
        Assert.Equal("v3", fetched.Content);
        Assert.Equal(third.EditedAt, fetched.EditedAt);

        var edits = await bob.GetEditsAsync(original.Id);
        Assert.Equal(original.Id, edits.MessageId);
        Assert.Equal(["v1", "v2"], edits.Edits.Select(e => e.Content));
        Assert.Equal([1, 2], edits.Edits.Select(e => e.Version));
        Assert.Equal(original.CreatedAt, edits.Edits[0].CreatedAt);
        Assert.Equal(second.EditedAt, edits.Edits[0].ReplacedAt);
        Assert.Equal(second.EditedAt, edits.Edits[1].CreatedAt);
        Assert.Equal(third.EditedAt, edits.Edits[1].ReplacedAt);
    }

    [Fact]
    public async Task Edit_Returns200WithTheWholeMessageObject()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        var json = await (await alice.PutAsync($"/api/v1/messages/{original.Id}", new { content = "v2" })).JsonAsync(HttpStatusCode.OK);

        MessagingKit.AssertMessageShape(json);
        Assert.Equal("v2", json.GetProperty("content").GetString());
        MessagingKit.AssertTimestamp(json.GetProperty("edited_at").GetString());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("deleted_at").ValueKind);
    }

    [Fact]
    public async Task Edit_TakesANewSeqOfTheConversation()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        await alice.EditAsync(original.Id, "v2");
        var next = await alice.SendTextAsync(conversation.Id, "after the edit");

        Assert.Equal(original.Seq + 2, next.Seq); // the edit took original.Seq + 1
        Assert.Equal(next.Seq, (await alice.GetConversationAsync(conversation.Id)).LastSeq);
    }

    [Fact]
    public async Task Edit_WithMentions_ReplacesTheMentionsAndKeepsTheOldOnesInTheHistory()
    {
        using var alice = _factory.BoundedApi("alice");
        var group = await alice.CreateGroupAsync("team", "bob", "carol");
        var original = await ParleyApi.ReadAsync<Message>(
            await alice.PostMessageAsync(new
            {
                conversation_id = group.Id, message_type = "text", content = "@bob hi", mentions = new[] { new { user_id = "bob", offset = 0, length = 4 } },
            }),
            HttpStatusCode.Created);

        var edited = await ParleyApi.ReadAsync<Message>(await alice.PutAsync(
            $"/api/v1/messages/{original.Id}",
            new { content = "hi @carol", mentions = new[] { new { user_id = "carol", offset = 3, length = 6 } } }));

        Assert.Equal(new Mention("carol", 3, 6), Assert.Single(edited.Mentions!));
        var earlier = Assert.Single((await alice.GetEditsAsync(original.Id)).Edits);
        Assert.Equal("@bob hi", earlier.Content);
        Assert.Equal(new Mention("bob", 0, 4), Assert.Single(earlier.Mentions!));
    }

    [Fact]
    public async Task Edit_MentionOfANonMember_Returns400AndChangesNothing()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        var problem = await ParleyApi.ProblemAsync(
            await alice.PutAsync($"/api/v1/messages/{original.Id}", new { content = "@zed", mentions = new[] { new { user_id = "zed", offset = 0, length = 4 } } }),
            HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(["mentions"], problem.ErrorFields);
        Assert.Equal(original, await alice.GetMessageAsync(original.Id));
        Assert.Empty((await alice.GetEditsAsync(original.Id)).Edits);
    }

    [Fact]
    public async Task Edit_MentionOfAUserWhoLeftSince_MayStayButNotBeAddedElsewhere()
    {
        using var alice = _factory.BoundedApi("alice");
        var group = await alice.CreateGroupAsync("team", "bob", "carol", "dave");
        var original = await ParleyApi.ReadAsync<Message>(
            await alice.PostMessageAsync(new
            {
                conversation_id = group.Id, message_type = "text", content = "hi @carol", mentions = new[] { new { user_id = "carol", offset = 3, length = 6 } },
            }),
            HttpStatusCode.Created);
        var other = await alice.SendTextAsync(group.Id, "no mentions here");
        (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/carol")).EnsureSuccessStatusCode();
        (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/dave")).EnsureSuccessStatusCode();

        // The same body again is a no-op; a typo fixed around the kept mention is an edit.
        var again = await ParleyApi.ReadAsync<Message>(await alice.PutAsync(
            $"/api/v1/messages/{original.Id}", new { content = "hi @carol", mentions = new[] { new { user_id = "carol", offset = 3, length = 6 } } }));
        Assert.Equal((original.Content, original.EditedAt), (again.Content, again.EditedAt));
        Assert.Empty((await alice.GetEditsAsync(original.Id)).Edits);
        var fixedTypo = await ParleyApi.ReadAsync<Message>(await alice.PutAsync(
            $"/api/v1/messages/{original.Id}", new { content = "hello @carol", mentions = new[] { new { user_id = "carol", offset = 6, length = 6 } } }));
        Assert.Equal(new Mention("carol", 6, 6), Assert.Single(fixedTypo.Mentions!));

        // A user who left is not mentioned anew: not in another message, nor added to this one.
        await ParleyApi.ProblemAsync(
            await alice.PutAsync($"/api/v1/messages/{other.Id}", new { content = "@carol", mentions = new[] { new { user_id = "carol", offset = 0, length = 6 } } }),
            HttpStatusCode.BadRequest, "validation_failed");
        await ParleyApi.ProblemAsync(
            await alice.PutAsync(
                $"/api/v1/messages/{original.Id}",
                new { content = "hello @carol @dave", mentions = new[] { new { user_id = "carol", offset = 6, length = 6 }, new { user_id = "dave", offset = 13, length = 5 } } }),
            HttpStatusCode.BadRequest, "validation_failed");
        var stored = await alice.GetMessageAsync(original.Id);
        Assert.Equal((fixedTypo.Content, fixedTypo.EditedAt), (stored.Content, stored.EditedAt));
        Assert.Equal(new Mention("carol", 6, 6), Assert.Single(stored.Mentions!));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  \n")]
    public async Task Edit_TextMessageToEmptyContent_Returns400OnContent(string? content)
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        var problem = await ParleyApi.ProblemAsync(
            await alice.PutAsync($"/api/v1/messages/{original.Id}", new { content }), HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(["content"], problem.ErrorFields);
        Assert.Equal("v1", (await alice.GetMessageAsync(original.Id)).Content);
    }

    [Fact]
    public async Task Edit_MediaCaptionRemoved_LeavesContentNullNotEmpty()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var image = await SendImageAsync(alice, conversation.Id, caption: "a caption");

        var json = await (await alice.PutAsync($"/api/v1/messages/{image.Id}", new { content = "" })).JsonAsync(HttpStatusCode.OK);

        // Like a send without a caption: an absent value is null, never "".
        Assert.Equal(JsonValueKind.Null, json.GetProperty("content").ValueKind);
        Assert.Null((await alice.GetMessageAsync(image.Id)).Content);
        Assert.Equal("a caption", Assert.Single((await alice.GetEditsAsync(image.Id)).Edits).Content);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    public async Task Edit_UncaptionedMediaToNoCaption_IsANoOp(string? content)
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var image = await SendImageAsync(alice, conversation.Id, caption: null);

        var edited = await ParleyApi.ReadAsync<Message>(await alice.PutAsync($"/api/v1/messages/{image.Id}", new { content }));

        Assert.Null(edited.Content);
        Assert.Null(edited.EditedAt);
        Assert.Empty((await alice.GetEditsAsync(image.Id)).Edits);
        Assert.Equal(image.Seq, (await alice.GetConversationAsync(conversation.Id)).LastSeq); // no message_edited event
    }

    [Fact]
    public async Task Edit_SameTextAgain_IsANoOp()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "same");

        var edited = await alice.EditAsync(sent.Id, "same");

        Assert.Equal(sent, edited);
        Assert.Empty((await alice.GetEditsAsync(sent.Id)).Edits);
        Assert.Equal(sent.Seq, (await alice.GetConversationAsync(conversation.Id)).LastSeq);
    }

    [Fact]
    public async Task Edit_ContentOverTheLimit_Returns400()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var original = await alice.SendTextAsync(conversation.Id, "v1");

        var problem = await ParleyApi.ProblemAsync(
            await alice.PutAsync($"/api/v1/messages/{original.Id}", new { content = new string('x', 4097) }), HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(["content"], problem.ErrorFields);
    }

    [Fact]
    public async Task Edit_ByAnotherMember_Returns403NotSender()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var group = await alice.CreateGroupAsync("team", "bob");
        var bobs = await bob.SendTextAsync(group.Id, "mine");

        // Not even the group's owner may put words in a member's mouth.
        await ParleyApi.ProblemAsync(await alice.PutAsync($"/api/v1/messages/{bobs.Id}", new { content = "yours" }), HttpStatusCode.Forbidden, "not_sender");

        Assert.Equal("mine", (await bob.GetMessageAsync(bobs.Id)).Content);
    }

    [Fact]
    public async Task Edit_OutsiderOrUnknownMessage_Returns404AndMalformedId400()
    {
        using var alice = _factory.BoundedApi("alice");
        using var mallory = _factory.BoundedApi("mallory");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");

        await ParleyApi.ProblemAsync(await mallory.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "x" }), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.PutAsync($"/api/v1/messages/{Guid.CreateVersion7()}", new { content = "x" }), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.PutAsync("/api/v1/messages/nope", new { content = "x" }), HttpStatusCode.BadRequest, "invalid_id");
        await ParleyApi.ProblemAsync(await mallory.GetAsync($"/api/v1/messages/{sent.Id}/edits"), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.GetAsync("/api/v1/messages/nope/edits"), HttpStatusCode.BadRequest, "invalid_id");

        Assert.Equal("v1", (await alice.GetMessageAsync(sent.Id)).Content);
    }

    [Fact]
    public async Task Edit_DeletedMessage_Returns409MessageDeleted()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");
        await alice.DeleteMessageAsync(sent.Id);

        await ParleyApi.ProblemAsync(await alice.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "back" }), HttpStatusCode.Conflict, "message_deleted");

        var tombstone = await alice.GetMessageAsync(sent.Id);
        Assert.Null(tombstone.Content);
        Assert.Null(tombstone.EditedAt);
        Assert.Empty((await alice.GetEditsAsync(sent.Id)).Edits);
    }

    [Fact]
    public async Task Edit_SystemMessageByTheService_Returns200()
    {
        using var alice = _factory.BoundedApi("alice");
        using var service = _factory.BoundedServiceApi();
        var group = await alice.CreateGroupAsync("team", "bob");
        var notice = await SendSystemAsync(service, group.Id, "maintenance at 10");

        var edited = await service.EditAsync(notice.Id, "maintenance at 11");

        Assert.Equal("maintenance at 11", edited.Content);
        Assert.Equal("maintenance at 11", (await alice.GetMessageAsync(notice.Id)).Content);
    }

    [Fact]
    public async Task EditAndDelete_SystemMessageByAUserWhoseIdIsTheServicesSenderId_AreRefused401()
    {
        using var alice = _factory.BoundedApi("alice");
        using var service = _factory.BoundedServiceApi();
        // The service's sender id is reserved: a user with that id cannot authenticate, so cannot pass for the service.
        var serviceSenderId = await ServiceSenderIdAsync(alice, service);
        using var impostor = _factory.BoundedApi(serviceSenderId);
        var group = await alice.CreateGroupAsync("team", "bob"); // nor can it be a member (ConversationsApiTests)
        var notice = await SendSystemAsync(service, group.Id, "official");

        await ParleyApi.ProblemAsync(await impostor.PutAsync($"/api/v1/messages/{notice.Id}", new { content = "forged" }), HttpStatusCode.Unauthorized, "unauthenticated");
        await ParleyApi.ProblemAsync(await impostor.DeleteAsync($"/api/v1/messages/{notice.Id}"), HttpStatusCode.Unauthorized, "unauthenticated");

        var stored = await alice.GetMessageAsync(notice.Id);
        Assert.Equal("official", stored.Content);
        Assert.Null(stored.DeletedAt);
        Assert.NotNull((await service.DeleteMessageAsync(notice.Id)).DeletedAt); // the service itself may
    }

    [Fact]
    public async Task Edits_OfANeverEditedMessage_AreEmpty()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");

        var json = await (await alice.GetAsync($"/api/v1/messages/{sent.Id}/edits")).JsonAsync(HttpStatusCode.OK);

        Assert.Equal(sent.Id, json.GetProperty("message_id").GetGuid());
        Assert.Equal(0, json.GetProperty("edits").GetArrayLength());
    }

    [Fact]
    public async Task Delete_BySender_ReturnsATombstoneThatGetReturnsToo()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var group = await alice.CreateGroupAsync("team", "bob");
        var sent = await ParleyApi.ReadAsync<Message>(
            await alice.PostMessageAsync(new
            {
                conversation_id = group.Id,
                message_type = "image",
                content = "@bob look",
                mentions = new[] { new { user_id = "bob", offset = 0, length = 4 } },
                media = new { url = "https://cdn.example.com/p.png", mime_type = "image/png", size_bytes = 42 },
                client_message_id = "img-1",
            }),
            HttpStatusCode.Created);

        var json = await (await alice.DeleteAsync($"/api/v1/messages/{sent.Id}")).JsonAsync(HttpStatusCode.OK);

        MessagingKit.AssertMessageShape(json);
        foreach (var field in new[] { "content", "mentions", "media", "location" })
        {
            Assert.Equal(JsonValueKind.Null, json.GetProperty(field).ValueKind);
        }

        MessagingKit.AssertTimestamp(json.GetProperty("deleted_at").GetString());
        Assert.Equal(sent.Id, json.GetProperty("id").GetGuid());
        Assert.Equal(sent.Seq, json.GetProperty("seq").GetInt64());
        Assert.Equal("alice", json.GetProperty("sender_id").GetString());
        Assert.Equal("image", json.GetProperty("message_type").GetString());
        var fetched = await (await bob.GetAsync($"/api/v1/messages/{sent.Id}")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(json.ToString(), fetched.ToString());
    }

    [Fact]
    public async Task Delete_LocationMessage_ErasesTheLocation()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await ParleyApi.ReadAsync<Message>(
            await alice.PostMessageAsync(new
            {
                conversation_id = conversation.Id, message_type = "location", content = "home", location = new { latitude = 1.5, longitude = 2.5, name = "home" },
            }),
            HttpStatusCode.Created);

        var tombstone = await alice.DeleteMessageAsync(sent.Id);

        Assert.Null(tombstone.Location);
        Assert.Null(tombstone.Content);
        Assert.Null((await alice.GetMessageAsync(sent.Id)).Location);
    }

    [Fact]
    public async Task Delete_EditedMessage_ErasesItsEditHistory()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "secret v1");
        await alice.EditAsync(sent.Id, "secret v2");
        await alice.EditAsync(sent.Id, "secret v3");
        Assert.Equal(2, (await bob.GetEditsAsync(sent.Id)).Edits.Count);

        await alice.DeleteMessageAsync(sent.Id);

        var edits = await (await bob.GetAsync($"/api/v1/messages/{sent.Id}/edits")).JsonAsync(HttpStatusCode.OK);
        Assert.Equal(0, edits.GetProperty("edits").GetArrayLength());
        Assert.DoesNotContain("secret", edits.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("secret", (await (await bob.GetAsync($"/api/v1/messages/{sent.Id}")).JsonAsync(HttpStatusCode.OK)).ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("secret", (await bob.ListMessagesAsync(conversation.Id)).Messages.Single().Content ?? "", StringComparison.Ordinal);
    }

    [Fact]
    public async Task Delete_Twice_Returns200BothTimesAndTakesOneSeq()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "bye");

        var first = await alice.DeleteMessageAsync(sent.Id);
        var afterFirst = (await alice.GetConversationAsync(conversation.Id)).LastSeq;
        var second = await alice.DeleteMessageAsync(sent.Id);
        var afterSecond = (await alice.GetConversationAsync(conversation.Id)).LastSeq;

        Assert.Equal(sent.Seq + 1, afterFirst);
        Assert.Equal(afterFirst, afterSecond);
        Assert.Equal(first, second);
    }

    [Theory]
    [InlineData("owner")]
    [InlineData("admin")]
    public async Task Delete_GroupOwnerOrAdmin_MayDeleteAnothersMessage(string role)
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        using var carol = _factory.BoundedApi("carol");
        var group = await alice.CreateGroupAsync("team", "bob", "carol");
        if (role == "admin")
        {
            await ParleyApi.ReadAsync<JsonElement>(await alice.PatchAsync($"/api/v1/conversations/{group.Id}/participants/carol", new { role = "admin" }));
        }

        var moderator = role == "owner" ? alice : carol;
        var bobs = await bob.SendTextAsync(group.Id, "spam");

        var tombstone = await moderator.DeleteMessageAsync(bobs.Id);

        Assert.NotNull(tombstone.DeletedAt);
        Assert.Equal("bob", tombstone.SenderId);
        Assert.NotNull((await bob.GetMessageAsync(bobs.Id)).DeletedAt);
    }

    [Fact]
    public async Task Delete_PlainGroupMember_MayNotDeleteAnothersMessage()
    {
        using var alice = _factory.BoundedApi("alice");
        using var carol = _factory.BoundedApi("carol");
        var group = await alice.CreateGroupAsync("team", "bob", "carol");
        var alices = await alice.SendTextAsync(group.Id, "keep me");

        await ParleyApi.ProblemAsync(await carol.DeleteAsync($"/api/v1/messages/{alices.Id}"), HttpStatusCode.Forbidden, "forbidden");

        var kept = await alice.GetMessageAsync(alices.Id);
        Assert.Equal("keep me", kept.Content);
        Assert.Null(kept.DeletedAt);
    }

    [Fact]
    public async Task Delete_OtherPersonInADirectConversation_Returns403()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        // bob created it: creating a direct conversation grants no moderation rights.
        var conversation = await bob.CreateDirectAsync("alice");
        var alices = await alice.SendTextAsync(conversation.Id, "mine");

        await ParleyApi.ProblemAsync(await bob.DeleteAsync($"/api/v1/messages/{alices.Id}"), HttpStatusCode.Forbidden, "forbidden");

        Assert.Equal("mine", (await alice.GetMessageAsync(alices.Id)).Content);
    }

    [Fact]
    public async Task Delete_OutsiderOrUnknownMessage_Returns404AndMalformedId400()
    {
        using var alice = _factory.BoundedApi("alice");
        using var mallory = _factory.BoundedApi("mallory");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "mine");

        await ParleyApi.ProblemAsync(await mallory.DeleteAsync($"/api/v1/messages/{sent.Id}"), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.DeleteAsync($"/api/v1/messages/{Guid.CreateVersion7()}"), HttpStatusCode.NotFound, "not_found");
        await ParleyApi.ProblemAsync(await alice.DeleteAsync("/api/v1/messages/nope"), HttpStatusCode.BadRequest, "invalid_id");

        Assert.Null((await alice.GetMessageAsync(sent.Id)).DeletedAt);
    }

    private static async Task<Message> SendSystemAsync(ParleyApi service, Guid conversationId, string content) =>
        await ParleyApi.ReadAsync<Message>(
            await service.PostMessageAsync(new { conversation_id = conversationId, message_type = "system", content }), HttpStatusCode.Created);

    /// <summary>The sender_id the service's messages carry, learnt from a message in a throwaway conversation.</summary>
    private static async Task<string> ServiceSenderIdAsync(ParleyApi owner, ParleyApi service)
    {
        var scratch = await owner.CreateGroupAsync("scratch", "nobody");
        return (await SendSystemAsync(service, scratch.Id, "probe")).SenderId;
    }

    private static async Task<Message> SendImageAsync(ParleyApi sender, Guid conversationId, string? caption) =>
        await ParleyApi.ReadAsync<Message>(
            await sender.PostMessageAsync(new
            {
                conversation_id = conversationId,
                message_type = "image",
                content = caption,
                media = new { url = "https://cdn.example.com/p.png", mime_type = "image/png", size_bytes = 42 },
            }),
            HttpStatusCode.Created);
}

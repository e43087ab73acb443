using System.Net;
using System.Text.Json;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>POST /api/v1/messages: the message object, every type's rules, limits, mentions, replies and access.</summary>
public sealed class SendMessageTests : IAsyncLifetime
{
    // A non-BMP character: one character to a reader, two UTF-16 code units to the limit.
    private const string Emoji = "\U0001F600";

    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Send_Text_Returns201WithTheWholeMessageObject()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);

        var response = await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "hello", "c-1"));
        var json = await response.JsonAsync(HttpStatusCode.Created);

        MessagingKit.AssertMessageShape(json);
        var id = json.GetProperty("id").GetGuid();
        Assert.Equal($"/api/v1/messages/{id}", response.Headers.Location?.OriginalString);
        Assert.Equal(conversation.Id, json.GetProperty("conversation_id").GetGuid());
        Assert.Equal(2, json.GetProperty("seq").GetInt64()); // creation is seq 1
        Assert.Equal("alice", json.GetProperty("sender_id").GetString());
        Assert.Equal("text", json.GetProperty("message_type").GetString());
        Assert.Equal("hello", json.GetProperty("content").GetString());
        Assert.Equal("c-1", json.GetProperty("client_message_id").GetString());
        foreach (var field in new[] { "reply_to_id", "mentions", "media", "location", "edited_at", "deleted_at" })
        {
            Assert.Equal(JsonValueKind.Null, json.GetProperty(field).ValueKind);
        }

        var createdAt = MessagingKit.AssertTimestamp(json.GetProperty("created_at").GetString());
        Assert.InRange(createdAt, before, DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.InRange(MessagingKit.UuidV7Time(id), createdAt.AddSeconds(-5), createdAt.AddSeconds(5));

        // GET returns the same object.
        var fetched = await (await alice.GetAsync($"/api/v1/messages/{id}")).JsonAsync(HttpStatusCode.OK);
        MessagingKit.AssertMessageShape(fetched);
        Assert.Equal(json.ToString(), fetched.ToString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\n\t ")]
    public async Task Send_TextWithoutVisibleContent_Returns400OnContent(string? content)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "text", content });

        Assert.Contains("content", problem.ErrorFields);
        Assert.Empty((await alice.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Send_ContentOf4096CodeUnitsOfEmoji_IsAccepted()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var content = string.Concat(Enumerable.Repeat(Emoji, 2048)); // 2,048 characters, 4,096 code units

        var sent = await alice.SendTextAsync(conversation.Id, content);

        Assert.Equal(4096, sent.Content!.Length);
        Assert.Equal(content, (await alice.GetMessageAsync(sent.Id)).Content);
    }

    [Fact]
    public async Task Send_ContentOf4097CodeUnits_Returns400EvenThoughItHasFewerCharacters()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        // 2,049 characters (well under 4,096) but 4,097 UTF-16 code units: code units are what count.
        var content = string.Concat(Enumerable.Repeat(Emoji, 2048)) + "a";

        var problem = await alice.SendInvalidAsync(MessagingKit.TextBody(conversation.Id, content));

        Assert.Contains("content", problem.ErrorFields);
    }

    [Theory]
    [InlineData(4096, HttpStatusCode.Created)]
    [InlineData(4097, HttpStatusCode.BadRequest)]
    public async Task Send_AsciiContentAtTheLimit_AcceptedUpTo4096(int length, HttpStatusCode expected)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var response = await alice.PostMessageAsync(MessagingKit.TextBody(conversation.Id, new string('x', length)));

        Assert.Equal(expected, response.StatusCode);
    }

    [Theory]
    [InlineData("image", "image/jpeg")]
    [InlineData("video", "video/mp4")]
    [InlineData("audio", "audio/ogg")]
    [InlineData("file", "application/pdf")]
    [InlineData("file", "image/png")]
    [InlineData("file", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]
    [InlineData("file", "text/plain; charset=utf-8")]
    [InlineData("image", "image/svg+xml")]
    [InlineData("file", "*/*")] // what a share sheet often passes on
    [InlineData("image", "image/*")]
    public async Task Send_MediaTypeWithMatchingMedia_Returns201WithTheMediaAndNoCaption(string type, string mimeType)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var json = await (await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id,
            message_type = type,
            media = new
            {
                url = "https://cdn.example.com/a/1",
                mime_type = mimeType,
                size_bytes = 123_456,
                width = 640,
                height = 480,
                duration_ms = 1500,
                file_name = "one.bin",
                thumbnail_url = "https://cdn.example.com/a/1/thumb",
            },
        })).JsonAsync(HttpStatusCode.Created);

        MessagingKit.AssertMessageShape(json);
        Assert.Equal(type, json.GetProperty("message_type").GetString());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("content").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.GetProperty("location").ValueKind);
        var media = json.GetProperty("media");
        Assert.Equal("https://cdn.example.com/a/1", media.GetProperty("url").GetString());
        Assert.Equal(mimeType, media.GetProperty("mime_type").GetString());
        Assert.Equal(123_456, media.GetProperty("size_bytes").GetInt64());
        Assert.Equal(640, media.GetProperty("width").GetInt32());
        Assert.Equal(480, media.GetProperty("height").GetInt32());
        Assert.Equal(1500, media.GetProperty("duration_ms").GetInt64());
        Assert.Equal("one.bin", media.GetProperty("file_name").GetString());
        Assert.Equal("https://cdn.example.com/a/1/thumb", media.GetProperty("thumbnail_url").GetString());
    }

    [Fact]
    public async Task Send_ImageWithCaptionAndOnlyRequiredMediaFields_Returns201WithNullsForTheRest()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var json = await (await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "image",
            content = "look at this",
            media = new { url = "https://cdn.example.com/p.png", mime_type = "image/png", size_bytes = 0 },
        })).JsonAsync(HttpStatusCode.Created);

        Assert.Equal("look at this", json.GetProperty("content").GetString());
        var media = json.GetProperty("media");
        Assert.Equal(0, media.GetProperty("size_bytes").GetInt64());
        foreach (var field in new[] { "width", "height", "duration_ms", "file_name", "thumbnail_url" })
        {
            Assert.Equal(JsonValueKind.Null, media.GetProperty(field).ValueKind);
        }
    }

    [Theory]
    [InlineData("image")]
    [InlineData("video")]
    [InlineData("audio")]
    [InlineData("file")]
    public async Task Send_MediaTypeWithoutMedia_Returns400OnMedia(string type)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = type, content = "caption" });

        Assert.Contains("media", problem.ErrorFields);
    }

    [Fact]
    public async Task Send_MediaWithoutUrlMimeTypeAndSize_Returns400OnEachField()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "image", media = new { width = 10 } });

        Assert.Contains("media.url", problem.ErrorFields);
        Assert.Contains("media.mime_type", problem.ErrorFields);
        Assert.Contains("media.size_bytes", problem.ErrorFields);
    }

    [Theory]
    [InlineData("image", "video/mp4")]
    [InlineData("video", "image/gif")]
    [InlineData("audio", "application/octet-stream")]
    [InlineData("image", "imagepng")]
    [InlineData("image", "image/")]
    [InlineData("file", "application/")]
    [InlineData("file", "/pdf")]
    [InlineData("file", "application/pdf/x")]
    [InlineData("file", "application/ pdf")]
    [InlineData("file", "text plain/x")]
    [InlineData("file", "*/pdf")]
    [InlineData("image", "*/*")]
    public async Task Send_MimeTypeNotMatchingTheType_Returns400OnMimeType(string type, string mimeType)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id,
            message_type = type,
            media = new { url = "https://cdn.example.com/x", mime_type = mimeType, size_bytes = 10 },
        });

        Assert.Equal(["media.mime_type"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\u3000")]
    public async Task Send_BlankFileName_Returns400OnFileName(string fileName)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "file",
            media = new { url = "https://cdn.example.com/x", mime_type = "application/pdf", size_bytes = 10, file_name = fileName },
        });

        Assert.Equal(["media.file_name"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_MediaOnATextMessage_Returns400OnMedia()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "text",
            content = "hi",
            media = new { url = "https://cdn.example.com/x", mime_type = "image/png", size_bytes = 10 },
        });

        Assert.Equal(["media"], problem.ErrorFields);
    }

    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(90.0, 180.0)]
    [InlineData(-90.0, -180.0)]
    [InlineData(52.520008, 13.404954)]
    public async Task Send_LocationInRange_Returns201WithTheLocation(double latitude, double longitude)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var json = await (await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "location",
            location = new { latitude, longitude, name = "here" },
        })).JsonAsync(HttpStatusCode.Created);

        MessagingKit.AssertMessageShape(json);
        var location = json.GetProperty("location");
        Assert.Equal(latitude, location.GetProperty("latitude").GetDouble());
        Assert.Equal(longitude, location.GetProperty("longitude").GetDouble());
        Assert.Equal("here", location.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("content").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.GetProperty("media").ValueKind);
    }

    [Theory]
    [InlineData(90.0001, 0.0, "location.latitude")]
    [InlineData(-91.0, 0.0, "location.latitude")]
    [InlineData(0.0, 180.5, "location.longitude")]
    [InlineData(0.0, -181.0, "location.longitude")]
    public async Task Send_LocationOutOfRange_Returns400OnTheCoordinate(double latitude, double longitude, string field)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "location", location = new { latitude, longitude } });

        Assert.Equal([field], problem.ErrorFields);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" \t ")]
    public async Task Send_LocationWithBlankName_Returns400OnName(string name)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "location", location = new { latitude = 1.0, longitude = 2.0, name } });

        Assert.Equal(["location.name"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_LocationWithoutCoordinates_Returns400OnBoth()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "location", location = new { name = "x" } });

        Assert.Contains("location.latitude", problem.ErrorFields);
        Assert.Contains("location.longitude", problem.ErrorFields);
    }

    [Fact]
    public async Task Send_LocationWithMedia_Returns400OnMedia()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "location",
            location = new { latitude = 1.0, longitude = 2.0 },
            media = new { url = "https://cdn.example.com/x", mime_type = "image/png", size_bytes = 10 },
        });

        Assert.Equal(["media"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_SystemAsUser_Returns403()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "system", content = "alice joined" }),
            HttpStatusCode.Forbidden, "forbidden");

        Assert.Empty((await alice.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Send_SystemAsService_Returns201AndCountsAsUnreadForEveryMember()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        using var service = _factory.BoundedServiceApi();
        var conversation = await alice.CreateGroupAsync("team", "bob");

        var json = await (await service.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "system", content = "Welcome" }))
            .JsonAsync(HttpStatusCode.Created);

        MessagingKit.AssertMessageShape(json);
        Assert.Equal("system", json.GetProperty("message_type").GetString());
        Assert.Equal("Welcome", json.GetProperty("content").GetString());
        Assert.NotEqual("alice", json.GetProperty("sender_id").GetString());
        Assert.Equal(json.GetProperty("id").GetGuid(), Assert.Single((await bob.ListMessagesAsync(conversation.Id)).Messages).Id);
        Assert.Equal(1, (await alice.GetConversationAsync(conversation.Id)).UnreadCount);
        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
    }

    [Fact]
    public async Task Send_SystemAsServiceWithoutContent_Returns400OnContent()
    {
        using var alice = _factory.BoundedApi("alice");
        using var service = _factory.BoundedServiceApi();
        var conversation = await alice.CreateDirectAsync("bob");

        var problem = await service.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = "system", content = " " });

        Assert.Equal(["content"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("sticker")]
    [InlineData("TEXT")]
    [InlineData("")]
    [InlineData(null)]
    public async Task Send_UnknownOrMissingMessageType_Returns400OnMessageType(string? type)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new { conversation_id = conversation.Id, message_type = type, content = "hi" });

        Assert.Contains("message_type", problem.ErrorFields);
    }

    [Fact]
    public async Task Send_MentionCountedInUtf16Units_Returns201WithTheMention()
    {
        await using var chat = await _factory.GroupChat("team", "alice", "bob", "carol").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        // "@bob" starts after the emoji (2 units) and a space: offset 3, not 2.
        var content = Emoji + " @bob and @carol";

        var json = await (await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id,
            message_type = "text",
            content,
            mentions = new[] { new { user_id = "bob", offset = 3, length = 4 }, new { user_id = "carol", offset = 12, length = 6 } },
        })).JsonAsync(HttpStatusCode.Created);

        var mentions = json.GetProperty("mentions").EnumerateArray().ToList();
        Assert.Equal(2, mentions.Count);
        Assert.Equal("bob", mentions[0].GetProperty("user_id").GetString());
        Assert.Equal(3, mentions[0].GetProperty("offset").GetInt32());
        Assert.Equal(4, mentions[0].GetProperty("length").GetInt32());
        Assert.Equal("@bob", content.Substring(3, 4));
        Assert.Equal("@carol", content.Substring(12, 6));
    }

    [Fact]
    public async Task Send_MentionEndingAtTheLastCodeUnit_IsAcceptedButOnePastItIsNot()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var content = "hi " + Emoji; // 5 UTF-16 code units, 4 characters

        var inside = await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content, mentions = new[] { new { user_id = "bob", offset = 0, length = 5 } },
        });
        var outside = await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content, mentions = new[] { new { user_id = "bob", offset = 0, length = 6 } },
        });

        Assert.Equal(HttpStatusCode.Created, inside.StatusCode);
        var problem = await ParleyApi.ProblemAsync(outside, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["mentions[0]"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_TheSameMentionTwice_Returns400OnTheRepeatButTwoMentionsOfOneUserAreFine()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        const string content = "@bob, @bob";

        var repeated = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content,
            mentions = new[] { new { user_id = "bob", offset = 0, length = 4 }, new { user_id = "bob", offset = 0, length = 4 } },
        });
        var twice = await (await alice.PostMessageAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content,
            mentions = new[] { new { user_id = "bob", offset = 0, length = 4 }, new { user_id = "bob", offset = 6, length = 4 } },
        })).JsonAsync(HttpStatusCode.Created);

        Assert.Equal(["mentions[1]"], repeated.ErrorFields);
        Assert.Equal(2, twice.GetProperty("mentions").GetArrayLength());
    }

    [Theory]
    [InlineData(-1, 2)]
    [InlineData(0, 0)]
    [InlineData(4, 1)]
    [InlineData(int.MaxValue, 1)]
    public async Task Send_MentionOutsideTheContent_Returns400(int offset, int length)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content = "@bob", mentions = new[] { new { user_id = "bob", offset, length } },
        });

        Assert.Contains("mentions[0]", problem.ErrorFields);
    }

    [Fact]
    public async Task Send_MentionOfANonMember_Returns400OnMentions()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await alice.SendInvalidAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content = "@zed", mentions = new[] { new { user_id = "zed", offset = 0, length = 4 } },
        });

        Assert.Equal(["mentions"], problem.ErrorFields);
        Assert.Empty((await alice.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Send_MentionsUpToTheLimit_AcceptedAndOneMoreRejected()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var config = await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync("/api/v1/config"));
        var max = config.GetProperty("max_mentions").GetInt32();
        Assert.True(max > 0, "max_mentions must be positive");
        var content = string.Concat(Enumerable.Repeat("@bob ", max + 1));
        object Mentions(int count) => Enumerable.Range(0, count).Select(i => new { user_id = "bob", offset = i * 5, length = 4 }).ToArray();

        var atLimit = await alice.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "text", content, mentions = Mentions(max) });
        var overLimit = await alice.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "text", content, mentions = Mentions(max + 1) });

        Assert.Equal(max, (await atLimit.JsonAsync(HttpStatusCode.Created)).GetProperty("mentions").GetArrayLength());
        var problem = await ParleyApi.ProblemAsync(overLimit, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["mentions"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_ReplyToAMessageOfTheSameConversation_Returns201WithReplyToId()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var original = await alice.SendTextAsync(conversation.Id, "question?");

        var json = await (await bob.PostMessageAsync(new
        {
            conversation_id = conversation.Id, message_type = "text", content = "answer", reply_to_id = original.Id,
        })).JsonAsync(HttpStatusCode.Created);

        Assert.Equal(original.Id, json.GetProperty("reply_to_id").GetGuid());
    }

    [Fact]
    public async Task Send_ReplyToAMessageOfAnotherConversation_Returns400OnReplyToId()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, direct) = (chat.Api("alice"), chat.Conversation);
        var group = await alice.CreateGroupAsync("team", "carol");
        var elsewhere = await alice.SendTextAsync(group.Id, "in the group");

        var problem = await alice.SendInvalidAsync(new { conversation_id = direct.Id, message_type = "text", content = "re", reply_to_id = elsewhere.Id });

        Assert.Equal(["reply_to_id"], problem.ErrorFields);
        Assert.Empty((await alice.ListMessagesAsync(direct.Id)).Messages);
    }

    [Fact]
    public async Task Send_ReplyToAMessageFromBeforeTheSenderJoined_Returns400OnReplyToId()
    {
        await using var chat = await _factory.GroupChat("team", "alice", "bob").OpenAsync();
        var (alice, dave, group) = (chat.Api("alice"), chat.Api("dave"), chat.Conversation);
        var early = await alice.SendTextAsync(group.Id, "before dave");
        await ParleyApi.ReadAsync<JsonElement>(await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "dave" } }));

        // dave cannot see it, so he cannot reply to it either (nor learn that it exists).
        var problem = await dave.SendInvalidAsync(new { conversation_id = group.Id, message_type = "text", content = "re", reply_to_id = early.Id });

        Assert.Equal(["reply_to_id"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("0197a0a0-0000-7000-8000-000000000000")]
    [InlineData("not-a-uuid")]
    [InlineData("0197a0a000007000800000000000000")]
    public async Task Send_ReplyToAnUnknownOrMalformedId_Returns400OnReplyToId(string replyToId)
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);

        var problem = await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "text", content = "re", reply_to_id = replyToId }),
            HttpStatusCode.BadRequest);

        Assert.Equal(["reply_to_id"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("not-a-uuid")]
    [InlineData("12345")]
    [InlineData("")]
    [InlineData(null)]
    public async Task Send_MalformedOrMissingConversationId_Returns400OnConversationId(string? conversationId)
    {
        using var alice = _factory.BoundedApi("alice");

        var problem = await ParleyApi.ProblemAsync(
            await alice.PostMessageAsync(new { conversation_id = conversationId, message_type = "text", content = "hi" }), HttpStatusCode.BadRequest);

        Assert.Equal(["conversation_id"], problem.ErrorFields);
    }

    [Fact]
    public async Task Send_UnknownConversationAndOutsider_Return404WithTheSameProblem()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, mallory, conversation) = (chat.Api("alice"), chat.Api("mallory"), chat.Conversation);

        var outsider = await ParleyApi.ProblemAsync(
            await mallory.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "let me in")), HttpStatusCode.NotFound, "not_found");
        var unknown = await ParleyApi.ProblemAsync(
            await mallory.PostMessageAsync(MessagingKit.TextBody(Guid.CreateVersion7(), "anyone?")), HttpStatusCode.NotFound, "not_found");

        // Existence is not revealed: the outsider learns nothing an unknown id would not tell.
        Assert.Equal(unknown.Detail, outsider.Detail);
        Assert.Empty((await alice.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Send_AfterBeingRemovedFromTheGroup_Returns404()
    {
        await using var chat = await _factory.GroupChat("team", "alice", "bob").OpenAsync();
        var (alice, bob, group) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/bob")).StatusCode);

        await ParleyApi.ProblemAsync(await bob.PostMessageAsync(MessagingKit.TextBody(group.Id, "still here?")), HttpStatusCode.NotFound, "not_found");
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("[1,2]")]
    [InlineData("{\"conversation_id\": 5, \"message_type\": \"text\", \"content\": \"hi\"}")]
    [InlineData("{\"conversation_id\": \"0197a0a0-0000-7000-8000-000000000000\", \"message_type\": \"text\", \"content\": \"hi\", \"mentions\": \"bob\"}")]
    public async Task Send_MalformedBody_Returns400NotA500(string body)
    {
        using var alice = _factory.BoundedApi("alice");

        await ParleyApi.ProblemAsync(await alice.PostMessageAsync(body), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Send_MovesTheSendersReadWatermarkToTheNewMessage()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        await bob.SendTextAsync(conversation.Id, "one");
        await bob.SendTextAsync(conversation.Id, "two");
        Assert.Equal(2, (await alice.GetConversationAsync(conversation.Id)).UnreadCount);

        var sent = await alice.SendTextAsync(conversation.Id, "three");

        var mine = await alice.GetConversationAsync(conversation.Id);
        Assert.Equal(0, mine.UnreadCount);
        Assert.Equal(sent.Seq, mine.ReadUpToSeq);
        Assert.Equal(sent.Id, mine.LastReadMessageId);
        var listed = (await alice.ConversationsByIdAsync())[conversation.Id];
        Assert.Equal(0, listed.UnreadCount);
        Assert.Equal(sent.Seq, listed.ReadUpToSeq);
        // The other side's count is unaffected by alice's watermark.
        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
    }
}

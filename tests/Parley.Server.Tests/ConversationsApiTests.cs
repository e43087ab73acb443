using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Protocol;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>Creating, listing and reading conversations (POST/GET /api/v1/conversations).</summary>
public sealed class ConversationsApiTests : IAsyncLifetime
{
    private const int MaxGroupParticipants = 5;

    // The clock moves only when a test says so: "most recent activity first" is then exact, and ties are deliberate.
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public ConversationsApiTests()
    {
        _factory = new ParleyFactory(s => s["Limits:MaxGroupParticipants"] = $"{MaxGroupParticipants}", _time);
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    // ---- POST /api/v1/conversations: direct ----------------------------------------------------------

    [Fact]
    public async Task CreateDirect_CallerNotInParticipantIds_Returns201WithCallerAndOther()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);

        using var response = await CreateAsync(api, new { type = "direct", participant_ids = new[] { bob } });

        var conversation = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal($"/api/v1/conversations/{conversation.Id}", response.Headers.Location?.OriginalString);
        Assert.Equal("direct", conversation.Type);
        Assert.Null(conversation.Name);
        Assert.Equal(alice, conversation.CreatedBy);
        Assert.Equal(new Dictionary<string, string> { [alice] = "member", [bob] = "member" }, RolesOf(conversation));
        Assert.Equal(1, conversation.LastSeq);
        Assert.Null(conversation.LastMessage);
        Assert.Equal(0, conversation.UnreadCount);
        Assert.Equal(7, conversation.Id.Version);
    }

    [Fact]
    public async Task CreateDirect_CallerInParticipantIds_Returns201WithTheTwoUsers()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);

        using var response = await CreateAsync(api, new { type = "direct", participant_ids = new[] { alice, bob } });

        var conversation = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal([alice, bob], conversation.Participants.Select(p => p.UserId).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task CreateDirect_SamePairAgainFromEitherSide_Returns200WithTheSameConversation()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);
        using var first = await CreateAsync(aliceApi, new { type = "direct", participant_ids = new[] { bob } });
        var created = await ParleyApi.ReadAsync<Conversation>(first, HttpStatusCode.Created);

        using var again = await CreateAsync(aliceApi, new { type = "direct", participant_ids = new[] { bob } });
        using var fromBob = await CreateAsync(bobApi, new { type = "direct", participant_ids = new[] { alice } });
        using var fromBobWithBoth = await CreateAsync(bobApi, new { type = "direct", participant_ids = new[] { bob, alice } });

        foreach (var response in new[] { again, fromBob, fromBobWithBoth })
        {
            var existing = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.OK);
            Assert.Equal(created.Id, existing.Id);
            Assert.Equal(1, existing.LastSeq);
        }

        var list = await aliceApi.ListConversationsAsync();
        Assert.Equal([created.Id], list.Conversations.Select(c => c.Id));
    }

    [Fact]
    public async Task CreateDirect_DifferentPairs_AreDifferentConversations()
    {
        var (alice, bob, carol) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        using var api = _factory.Api(alice);

        var withBob = await api.CreateDirectAsync(bob);
        var withCarol = await api.CreateDirectAsync(carol);

        Assert.NotEqual(withBob.Id, withCarol.Id);
    }

    [Fact]
    public async Task CreateDirect_ConcurrentlyFromBothSides_CreatesOneConversation()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);

        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => i % 2 == 0
            ? CreateAsync(aliceApi, new { type = "direct", participant_ids = new[] { bob } })
            : CreateAsync(bobApi, new { type = "direct", participant_ids = new[] { alice } })));

        var ids = new List<Guid>();
        foreach (var response in responses)
        {
            using (response)
            {
                ids.Add((await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created, HttpStatusCode.OK)).Id);
            }
        }

        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.Created);
        Assert.Single(ids.Distinct());
        Assert.Single((await aliceApi.ListConversationsAsync()).Conversations);
    }

    [Fact]
    public async Task CreateDirect_WithName_Returns400()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type = "direct", participant_ids = new[] { NewUser("bob") }, name = "us" });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["name"], problem.ErrorFields);
    }

    public static TheoryData<string[]> NotTwoDistinctUsers => new()
    {
        Array.Empty<string>(),
        new[] { "{caller}" },
        new[] { "{caller}", "{caller}" },
        new[] { "bob", "carol" },
        new[] { "{caller}", "bob", "carol" },
    };

    [Theory]
    [MemberData(nameof(NotTwoDistinctUsers))]
    public async Task CreateDirect_NotExactlyTwoDistinctUsers_Returns400ValidationFailed(string[] participantIds)
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var ids = participantIds.Select(id => id == "{caller}" ? alice : id + "-" + alice).ToArray();

        using var response = await CreateAsync(api, new { type = "direct", participant_ids = ids });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("participant_ids", problem.ErrorFields);
        Assert.Empty((await api.ListConversationsAsync()).Conversations);
    }

    // ---- POST /api/v1/conversations: group -----------------------------------------------------------

    [Fact]
    public async Task CreateGroup_ByUser_Returns201WithCallerAsOwnerAndOthersAsMembers()
    {
        var (alice, bob, carol) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        using var api = _factory.Api(alice);

        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { bob, carol }, name = "Weekend" });

        var group = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal("group", group.Type);
        Assert.Equal("Weekend", group.Name);
        Assert.Equal(alice, group.CreatedBy);
        Assert.Equal(new Dictionary<string, string> { [alice] = "owner", [bob] = "member", [carol] = "member" }, RolesOf(group));
        Assert.Equal(1, group.LastSeq);
    }

    [Fact]
    public async Task CreateGroup_SameMembersTwice_CreatesTwoGroups()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);

        var first = await api.CreateGroupAsync("One", bob);
        var second = await api.CreateGroupAsync("One", bob);

        Assert.NotEqual(first.Id, second.Id);
    }

    [Fact]
    public async Task CreateGroup_NameAtTheLimit_Returns201AndOverTheLimit_Returns400()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);

        var atLimit = await api.CreateGroupAsync(new string('n', 128), bob);
        using var overLimit = await CreateAsync(api, new { type = "group", participant_ids = new[] { bob }, name = new string('n', 129) });

        Assert.Equal(128, atLimit.Name!.Length);
        var problem = await ParleyApi.ProblemAsync(overLimit, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["name"], problem.ErrorFields);
    }

    [Fact]
    public async Task CreateGroup_AtTheParticipantLimit_Returns201AndOverIt_Returns400()
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var others = Enumerable.Range(0, MaxGroupParticipants).Select(i => NewUser($"user{i}")).ToArray();

        // The creator counts: creator + (limit - 1) others is exactly the limit.
        var full = await api.CreateGroupAsync("full", others[..^1]);
        using var tooMany = await CreateAsync(api, new { type = "group", participant_ids = others });

        Assert.Equal(MaxGroupParticipants, full.Participants.Count);
        var problem = await ParleyApi.ProblemAsync(tooMany, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("participant_ids", problem.ErrorFields);
    }

    // ---- POST /api/v1/conversations: invalid input ---------------------------------------------------

    [Theory]
    [InlineData("channel")]
    [InlineData("")]
    [InlineData("Direct")]
    [InlineData(null)]
    public async Task Create_InvalidType_Returns400WithTypeField(string? type)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type, participant_ids = new[] { NewUser("bob") } });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("type", problem.ErrorFields);
    }

    [Theory]
    [InlineData("bob smith")]
    [InlineData("")]
    [InlineData("tab\there")]
    [InlineData("line\nbreak")]
    public async Task Create_MalformedParticipantId_Returns400NamingTheEntry(string badId)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { NewUser("bob"), badId } });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["participant_ids[1]"], problem.ErrorFields);
    }

    [Fact]
    public async Task Create_WithTheServiceRolesId_Returns400()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type = "group", name = "g", participant_ids = new[] { NewUser("bob"), "system" } });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["participant_ids[1]"], problem.ErrorFields);
    }

    [Fact]
    public async Task Create_ParticipantIdTooLong_Returns400()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var atLimit = await CreateAsync(api, new { type = "direct", participant_ids = new[] { new string('b', 128) } });
        using var overLimit = await CreateAsync(api, new { type = "direct", participant_ids = new[] { new string('b', 129) } });

        Assert.Equal(HttpStatusCode.Created, atLimit.StatusCode);
        var problem = await ParleyApi.ProblemAsync(overLimit, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("participant_ids[0]", problem.ErrorFields);
    }

    [Fact]
    public async Task Create_MissingParticipantIds_Returns400()
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type = "direct" });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("participant_ids", problem.ErrorFields);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("{\"type\": \"group\", \"participant_ids\": [\"bob\"]")]
    [InlineData("not json")]
    [InlineData("[1, 2]")]
    [InlineData("{\"type\": \"group\", \"participant_ids\": \"bob\"}")]
    [InlineData("{\"type\": 7, \"participant_ids\": [\"bob\"]}")]
    [InlineData("{\"type\": \"group\", \"participant_ids\": [1]}")]
    public async Task Create_MalformedJson_Returns400InvalidRequest(string body)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, body);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
    }

    [Theory]
    [InlineData("null")]
    [InlineData("")]
    public async Task Create_NoBody_Returns400InvalidRequest(string body)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, body);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
    }

    // ---- POST /api/v1/conversations: service role ----------------------------------------------------

    [Fact]
    public async Task CreateGroup_ByServiceWithOwnerId_Returns201WithThatOwnerAndWithoutTheService()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var service = _factory.ServiceApi();

        using var response = await CreateAsync(service, new { type = "group", participant_ids = new[] { alice, bob }, name = "Support", owner_id = bob });

        var group = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal(new Dictionary<string, string> { [alice] = "member", [bob] = "owner" }, RolesOf(group));
        using var aliceApi = _factory.Api(alice);
        Assert.Equal([group.Id], (await aliceApi.ListConversationsAsync()).Conversations.Select(c => c.Id));
        Assert.Equal(group.Id, (await aliceApi.GetConversationAsync(group.Id)).Id);
    }

    [Fact]
    public async Task CreateGroup_ByServiceWithOwnerIdNotAParticipant_Returns400()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var service = _factory.ServiceApi();

        using var response = await CreateAsync(service, new { type = "group", participant_ids = new[] { alice }, owner_id = bob });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["owner_id"], problem.ErrorFields);
    }

    [Fact]
    public async Task CreateDirect_ByService_IsTheSameConversationTheUsersGet()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var service = _factory.ServiceApi();
        using var aliceApi = _factory.Api(alice);

        using var response = await CreateAsync(service, new { type = "direct", participant_ids = new[] { alice, bob } });
        var direct = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        using var again = await CreateAsync(aliceApi, new { type = "direct", participant_ids = new[] { bob } });

        Assert.Equal(new Dictionary<string, string> { [alice] = "member", [bob] = "member" }, RolesOf(direct));
        Assert.Equal(direct.Id, (await ParleyApi.ReadAsync<Conversation>(again, HttpStatusCode.OK)).Id);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_OwnerIdFromAUser_Returns400(bool ownerIsCaller)
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);

        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { bob }, owner_id = ownerIsCaller ? alice : bob });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["owner_id"], problem.ErrorFields);
        Assert.Empty((await api.ListConversationsAsync()).Conversations);
    }

    // ---- GET /api/v1/conversations -------------------------------------------------------------------

    [Fact]
    public async Task List_ReturnsOnlyTheCallersConversations()
    {
        var (alice, bob, carol, dave) = (NewUser("alice"), NewUser("bob"), NewUser("carol"), NewUser("dave"));
        using var aliceApi = _factory.Api(alice);
        using var daveApi = _factory.Api(dave);
        var direct = await aliceApi.CreateDirectAsync(bob);
        var group = await aliceApi.CreateGroupAsync("g", carol);
        var others = await daveApi.CreateGroupAsync("not alice's", bob, carol);

        var aliceList = await aliceApi.ListConversationsAsync();
        using var bobApi = _factory.Api(bob);
        var bobList = await bobApi.ListConversationsAsync();

        Assert.Equal(new[] { direct.Id, group.Id }.Order(), aliceList.Conversations.Select(c => c.Id).Order());
        Assert.Equal(new[] { direct.Id, others.Id }.Order(), bobList.Conversations.Select(c => c.Id).Order());
        Assert.Null(aliceList.NextCursor);
    }

    [Fact]
    public async Task List_MostRecentActivityFirst_SendingMovesAConversationToTheTop()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);
        var c1 = await aliceApi.CreateGroupAsync("1", bob);
        _time.Advance(TimeSpan.FromSeconds(1));
        var c2 = await aliceApi.CreateGroupAsync("2", bob);
        _time.Advance(TimeSpan.FromSeconds(1));
        var c3 = await aliceApi.CreateGroupAsync("3", bob);

        Assert.Equal([c3.Id, c2.Id, c1.Id], await ListIdsAsync(aliceApi));

        _time.Advance(TimeSpan.FromSeconds(1));
        await bobApi.SendTextAsync(c1.Id, "from bob");
        Assert.Equal([c1.Id, c3.Id, c2.Id], await ListIdsAsync(aliceApi));

        _time.Advance(TimeSpan.FromSeconds(1));
        await aliceApi.SendTextAsync(c2.Id, "from alice");
        Assert.Equal([c2.Id, c1.Id, c3.Id], await ListIdsAsync(aliceApi));
        Assert.Equal([c2.Id, c1.Id, c3.Id], await ListIdsAsync(bobApi));

        var items = (await aliceApi.ListConversationsAsync()).Conversations;
        Assert.Equal(items.Select(c => c.LastActivityAt).OrderDescending(), items.Select(c => c.LastActivityAt));
    }

    [Fact]
    public async Task List_BeingAddedToAGroup_CountsAsTheMembersActivity()
    {
        var (alice, bob, carol) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        using var aliceApi = _factory.Api(alice);
        using var carolApi = _factory.Api(carol);
        var group = await aliceApi.CreateGroupAsync("older", bob);
        _time.Advance(TimeSpan.FromSeconds(1));
        var direct = await carolApi.CreateDirectAsync(bob);
        _time.Advance(TimeSpan.FromSeconds(1));

        await AddOkAsync(aliceApi, group.Id, carol);

        Assert.Equal([group.Id, direct.Id], await ListIdsAsync(carolApi));
        var joined = (await carolApi.ListConversationsAsync()).Conversations[0];
        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds(), joined.LastActivityAt.ToUnixTimeMilliseconds());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public async Task List_PagingWithLimit_VisitsEveryConversationOnceInOrder(int limit)
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var created = new List<Guid>();
        // Three at one instant and four at the next: pages must also split ties correctly.
        for (var i = 0; i < 7; i++)
        {
            if (i == 3)
            {
                _time.Advance(TimeSpan.FromSeconds(1));
            }

            created.Add((await api.CreateDirectAsync(NewUser($"friend{i}"))).Id);
        }

        var expectedOrder = await ListIdsAsync(api, "?limit=100");
        var pages = new List<IReadOnlyList<Conversation>>();
        string? cursor = null;
        do
        {
            var page = await api.ListConversationsAsync($"?limit={limit}" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}"));
            pages.Add(page.Conversations);
            cursor = page.NextCursor;
            Assert.True(pages.Count <= 7, "next_cursor never became null");
        }
        while (cursor is not null);

        Assert.Equal(created.Order(), expectedOrder.Order());
        Assert.Equal(expectedOrder, pages.SelectMany(p => p).Select(c => c.Id));
        Assert.Equal((7 + limit - 1) / limit, pages.Count);
        Assert.All(pages, p => Assert.InRange(p.Count, 1, limit));
    }

    [Fact]
    public async Task List_WithoutLimit_ReturnsAtMost20()
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        for (var i = 0; i < 21; i++)
        {
            await api.CreateDirectAsync(NewUser($"friend{i}"));
        }

        var first = await api.ListConversationsAsync();
        var rest = await api.ListConversationsAsync($"?cursor={Uri.EscapeDataString(first.NextCursor!)}");

        Assert.Equal(20, first.Conversations.Count);
        Assert.Single(rest.Conversations);
        Assert.Null(rest.NextCursor);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("101")]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("1.5")]
    [InlineData("")]
    public async Task List_InvalidLimit_Returns400(string limit)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.GetAsync($"/api/v1/conversations?limit={limit}");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["limit"], problem.ErrorFields);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("!!!")]
    [InlineData("MTIzOnh5eg")] // base64url of "123:xyz": the shape of a cursor, not one of ours
    [InlineData("")]
    public async Task List_InvalidCursor_Returns400(string cursor)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.GetAsync($"/api/v1/conversations?cursor={Uri.EscapeDataString(cursor)}");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["cursor"], problem.ErrorFields);
    }

    [Fact]
    public async Task List_EachItem_CarriesLastMessageUnreadCountReadPositionAndParticipants()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);
        var conversation = await aliceApi.CreateDirectAsync(bob);
        var first = await bobApi.SendTextAsync(conversation.Id, "one");
        var second = await bobApi.SendTextAsync(conversation.Id, "two");

        var aliceItem = Assert.Single((await aliceApi.ListConversationsAsync()).Conversations);
        var bobItem = Assert.Single((await bobApi.ListConversationsAsync()).Conversations);

        Assert.Equal(second.Id, aliceItem.LastMessage?.Id);
        Assert.Equal("two", aliceItem.LastMessage?.Content);
        Assert.Equal(2, aliceItem.UnreadCount);
        Assert.Equal(0, aliceItem.ReadUpToSeq);
        Assert.Null(aliceItem.LastReadMessageId);
        Assert.Equal(second.Seq, aliceItem.LastSeq);
        Assert.Equal([alice, bob], aliceItem.Participants.Select(p => p.UserId).Order(StringComparer.Ordinal));
        // Sending moves the sender's own read watermark to the new message.
        Assert.Equal(0, bobItem.UnreadCount);
        Assert.Equal(second.Seq, bobItem.ReadUpToSeq);
        Assert.Equal(second.Id, bobItem.LastReadMessageId);

        await aliceApi.MarkReadAsync(first.Id);
        var afterRead = Assert.Single((await aliceApi.ListConversationsAsync()).Conversations);
        Assert.Equal(1, afterRead.UnreadCount);
        Assert.Equal(first.Seq, afterRead.ReadUpToSeq);
        Assert.Equal(first.Id, afterRead.LastReadMessageId);
    }

    [Fact]
    public async Task List_WireFormat_HasEveryDocumentedFieldInSnakeCase()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);
        await api.CreateDirectAsync(bob);

        using var response = await api.GetAsync("/api/v1/conversations");
        var json = await ParleyApi.ReadAsync<System.Text.Json.JsonElement>(response);

        Assert.True(json.TryGetProperty("next_cursor", out _));
        var item = Assert.Single(json.GetProperty("conversations").EnumerateArray().ToList());
        foreach (var field in new[]
                 {
                     "id", "type", "name", "created_by", "created_at", "last_activity_at", "last_seq", "participants", "last_message",
                     "unread_count", "read_up_to_seq", "last_read_message_id",
                 })
        {
            Assert.True(item.TryGetProperty(field, out _), $"missing '{field}' in {item}");
        }

        Assert.Equal(System.Text.Json.JsonValueKind.Null, item.GetProperty("last_message").ValueKind);
        var participant = item.GetProperty("participants")[0];
        Assert.Equal(["user_id", "role", "joined_at"], participant.EnumerateObject().Select(p => p.Name));
    }

    // ---- GET /api/v1/conversations/{id} --------------------------------------------------------------

    [Fact]
    public async Task Get_Member_Returns200WithTheConversation()
    {
        var (alice, bob, carol) = (NewUser("alice"), NewUser("bob"), NewUser("carol"));
        using var aliceApi = _factory.Api(alice);
        using var bobApi = _factory.Api(bob);
        var group = await aliceApi.CreateGroupAsync("g", bob, carol);
        var message = await aliceApi.SendTextAsync(group.Id, "hi");

        var seen = await bobApi.GetConversationAsync(group.Id);

        Assert.Equal(group.Id, seen.Id);
        Assert.Equal("g", seen.Name);
        Assert.Equal(RolesOf(group), RolesOf(seen));
        Assert.Equal(message.Id, seen.LastMessage?.Id);
        Assert.Equal(1, seen.UnreadCount);
        Assert.Equal(message.Seq, seen.LastSeq);
    }

    [Fact]
    public async Task Get_Outsider_Returns404LikeAnUnknownId()
    {
        var (alice, bob, mallory) = (NewUser("alice"), NewUser("bob"), NewUser("mallory"));
        using var aliceApi = _factory.Api(alice);
        using var malloryApi = _factory.Api(mallory);
        var conversation = await aliceApi.CreateDirectAsync(bob);

        using var outsider = await malloryApi.GetAsync($"/api/v1/conversations/{conversation.Id}");
        using var unknown = await malloryApi.GetAsync($"/api/v1/conversations/{Guid.CreateVersion7()}");

        var hidden = await ParleyApi.ProblemAsync(outsider, HttpStatusCode.NotFound, "not_found");
        var missing = await ParleyApi.ProblemAsync(unknown, HttpStatusCode.NotFound, "not_found");
        Assert.Equal(missing.Detail, hidden.Detail);
    }

    [Theory]
    [InlineData("not-a-uuid")]
    [InlineData("123")]
    [InlineData("0195f8a2-6a4b-7c3d-9e8f-00112233445")]
    [InlineData("0195f8a2-6a4b-7c3d-9e8f-0011223344556")]
    [InlineData("{0195f8a2-6a4b-7c3d-9e8f-001122334455}")]
    public async Task Get_MalformedId_Returns400InvalidId(string id)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await api.GetAsync($"/api/v1/conversations/{Uri.EscapeDataString(id)}");

        await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_id");
    }

    private static async Task<List<Guid>> ListIdsAsync(ParleyApi api, string query = "") =>
        (await api.ListConversationsAsync(query)).Conversations.Select(c => c.Id).ToList();

    [Fact]
    public async Task Get_ByAMemberRemovedWhileItIsRead_Returns404AndNothingSentAfterTheRemoval()
    {
        // The membership check and the conversation were two reads: a member removed between them got 200 with the
        // conversation as the service role sees it, its last message sent after the removal included.
        await using var factory = new ParleyFactory(services: FailingStore.Install);
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        using var bob = factory.Api("bob");
        var group = await alice.CreateGroupAsync("g", "bob");
        store.Method = nameof(Parley.Server.Storage.IChatStore.GetConversationAsync);
        store.Delay = TimeSpan.FromSeconds(3);
        store.Failing = true;

        var read = bob.GetAsync($"/api/v1/conversations/{group.Id}");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.Failures == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the read did not reach the store");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        store.Failing = false;
        await RemoveOkAsync(alice, group.Id, "bob");
        await alice.SendTextAsync(group.Id, "after bob left");

        using var response = await read;
        await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
        Assert.DoesNotContain("after bob left", await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
    }
}

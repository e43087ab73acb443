using System.Net;
using System.Text.Json;
using Parley.Server.Protocol;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// Conversation and participant events over the WebSocket, and the positions (seq) every durable change takes.
/// </summary>
public sealed class ConversationEventsTests : IAsyncLifetime
{
    /// <summary>How long a socket must stay quiet to count as "received nothing".</summary>
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(1);

    private readonly ParleyFactory _factory = new();
    private readonly List<ParleyApi> _clients = [];
    private readonly List<WsClient> _sockets = [];

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var socket in _sockets)
        {
            await socket.DisposeAsync();
        }

        foreach (var client in _clients)
        {
            client.Dispose();
        }

        await _factory.DisposeAsync();
    }

    [Fact]
    public async Task ConversationCreated_ReachesEveryInitialMemberAndNobodyElse()
    {
        var (alice, bob, carol, dave) = (NewUser("alice"), NewUser("bob"), NewUser("carol"), NewUser("dave"));
        var sockets = new[] { await ConnectAsync(alice), await ConnectAsync(bob), await ConnectAsync(carol) };
        var outsider = await ConnectAsync(dave);

        var group = await Api(alice).CreateGroupAsync("Weekend", bob, carol);

        foreach (var socket in sockets)
        {
            var payload = await socket.NextAsync("conversation_created");
            Assert.Equal(1, payload.GetProperty("seq").GetInt64());
            var conversation = payload.GetProperty("conversation");
            Assert.Equal(group.Id, conversation.GetProperty("id").GetGuid());
            Assert.Equal("Weekend", conversation.GetProperty("name").GetString());
            Assert.Equal(3, conversation.GetProperty("participants").GetArrayLength());
            Assert.True(payload.TryGetProperty("timestamp", out _));
        }

        await outsider.AssertNoFrameAsync("conversation_created", Quiet);
    }

    [Fact]
    public async Task ConversationCreated_DirectAskedAgain_IsNotAnnouncedTwice()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        var aliceSocket = await ConnectAsync(alice);
        var bobSocket = await ConnectAsync(bob);

        var direct = await Api(alice).CreateDirectAsync(bob);
        await Api(bob).CreateDirectAsync(alice);

        foreach (var socket in new[] { aliceSocket, bobSocket })
        {
            var payload = await socket.NextAsync("conversation_created");
            Assert.Equal(direct.Id, payload.GetProperty("conversation").GetProperty("id").GetGuid());
            await socket.AssertNoFrameAsync("conversation_created", Quiet);
        }
    }

    [Fact]
    public async Task ConversationCreated_ByService_ReachesTheMembers()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        var sockets = new[] { await ConnectAsync(alice), await ConnectAsync(bob) };
        using var service = _factory.ServiceApi();

        using var response = await CreateAsync(service, new { type = "group", participant_ids = new[] { alice, bob }, owner_id = alice });
        var group = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);

        foreach (var socket in sockets)
        {
            var payload = await socket.NextAsync("conversation_created");
            Assert.Equal(group.Id, payload.GetProperty("conversation").GetProperty("id").GetGuid());
        }
    }

    [Fact]
    public async Task ParticipantAdded_ReachesTheMembersAndTheAddedUserOnly()
    {
        var (owner, bob, carol, dave) = (NewUser("owner"), NewUser("bob"), NewUser("carol"), NewUser("dave"));
        var group = await Api(owner).CreateGroupAsync("g", bob);
        var members = new[] { await ConnectAsync(owner), await ConnectAsync(bob), await ConnectAsync(carol) };
        var outsider = await ConnectAsync(dave);

        await AddOkAsync(Api(owner), group.Id, carol);

        foreach (var socket in members)
        {
            var payload = await socket.NextAsync("participant_added");
            AssertParticipantEvent(payload, group.Id, seq: 2, carol);
            Assert.Equal("member", payload.GetProperty("role").GetString());
            Assert.Equal(owner, payload.GetProperty("added_by").GetString());
        }

        await outsider.AssertNoFrameAsync("participant_added", Quiet);
    }

    [Fact]
    public async Task ParticipantAdded_SeveralAtOnce_EachAddedUserGetsOnlyTheEventsFromTheirOwnJoiningOn()
    {
        // One request adds carol (seq 2) and dave (seq 3): dave's window starts at 3, so seq 2 is not his to receive (no
        // catch-up or sync would ever return it to him).
        var (owner, carol, dave) = (NewUser("owner"), NewUser("carol"), NewUser("dave"));
        var group = await Api(owner).CreateGroupAsync("g");
        var (ownerSocket, carolSocket, daveSocket) = (await ConnectAsync(owner), await ConnectAsync(carol), await ConnectAsync(dave));

        await AddOkAsync(Api(owner), group.Id, carol, dave);

        foreach (var socket in new[] { ownerSocket, carolSocket })
        {
            AssertParticipantEvent(await socket.NextAsync("participant_added"), group.Id, seq: 2, carol);
            AssertParticipantEvent(await socket.NextAsync("participant_added"), group.Id, seq: 3, dave);
        }

        AssertParticipantEvent(await daveSocket.NextAsync("participant_added"), group.Id, seq: 3, dave);
        await daveSocket.AssertNoFrameAsync("participant_added", Quiet);
        Assert.DoesNotContain(ConversationEvents(daveSocket, group.Id), e => e.Seq < 3);
    }

    [Fact]
    public async Task ParticipantUpdated_ReachesEveryMember()
    {
        var (owner, bob, carol) = (NewUser("owner"), NewUser("bob"), NewUser("carol"));
        var group = await Api(owner).CreateGroupAsync("g", bob, carol);
        var members = new[] { await ConnectAsync(owner), await ConnectAsync(bob), await ConnectAsync(carol) };

        await SetRoleOkAsync(Api(owner), group.Id, bob, "admin");

        foreach (var socket in members)
        {
            var payload = await socket.NextAsync("participant_updated");
            AssertParticipantEvent(payload, group.Id, seq: 2, bob);
            Assert.Equal("admin", payload.GetProperty("role").GetString());
            Assert.Equal(owner, payload.GetProperty("updated_by").GetString());
        }
    }

    [Fact]
    public async Task ParticipantUpdated_OwnershipTransfer_IsTwoEventsInSeqOrder()
    {
        var (owner, bob) = (NewUser("owner"), NewUser("bob"));
        var group = await Api(owner).CreateGroupAsync("g", bob);
        var members = new[] { await ConnectAsync(owner), await ConnectAsync(bob) };

        await SetRoleOkAsync(Api(owner), group.Id, bob, "owner");

        foreach (var socket in members)
        {
            var first = await socket.NextAsync("participant_updated");
            var second = await socket.NextAsync("participant_updated");
            AssertParticipantEvent(first, group.Id, seq: 2, bob);
            Assert.Equal("owner", first.GetProperty("role").GetString());
            AssertParticipantEvent(second, group.Id, seq: 3, owner);
            Assert.Equal("admin", second.GetProperty("role").GetString());
        }
    }

    [Fact]
    public async Task ParticipantRemoved_ReachesTheRemovedUserWhoThenReceivesNothingMoreOfTheConversation()
    {
        var (owner, bob, carol, dave) = (NewUser("owner"), NewUser("bob"), NewUser("carol"), NewUser("dave"));
        var group = await Api(owner).CreateGroupAsync("g", bob, carol);
        var ownerSocket = await ConnectAsync(owner);
        var carolSocket = await ConnectAsync(carol);
        var bobSocket = await ConnectAsync(bob);

        await RemoveOkAsync(Api(owner), group.Id, bob);

        foreach (var socket in new[] { ownerSocket, carolSocket, bobSocket })
        {
            var payload = await socket.NextAsync("participant_removed");
            AssertParticipantEvent(payload, group.Id, seq: 2, bob);
            Assert.Equal(owner, payload.GetProperty("removed_by").GetString());
        }

        var message = await Api(owner).SendTextAsync(group.Id, "after bob left");
        await AddOkAsync(Api(owner), group.Id, dave);
        await TypingAsync(carol, group.Id);
        // The members get all of it (so the server did publish)...
        Assert.Equal(message.Id, (await carolSocket.NextAsync("new_message")).GetProperty("message").GetProperty("id").GetGuid());
        Assert.Equal(4, (await carolSocket.NextAsync("participant_added")).GetProperty("seq").GetInt64());
        await ownerSocket.NextAsync("typing");
        // ...and the removed member none of it.
        await bobSocket.AssertNoFrameAsync("new_message", Quiet);
        Assert.DoesNotContain(
            bobSocket.All(),
            f => f.GetProperty("type").GetString() != "connected" && f.GetProperty("type").GetString() != "participant_removed");
    }

    [Fact]
    public async Task ParticipantRemoved_FormerSender_GetsNoReceiptsForTheirEarlierMessages()
    {
        var (owner, bob, carol) = (NewUser("owner"), NewUser("bob"), NewUser("carol"));
        var group = await Api(owner).CreateGroupAsync("g", bob, carol);
        var sent = await Api(bob).SendTextAsync(group.Id, "bob's last words");
        await RemoveOkAsync(Api(owner), group.Id, bob);
        var bobSocket = await ConnectAsync(bob);
        var ownerSocket = await ConnectAsync(owner);

        // carol had not received bob's message: reading it moves her delivered and read watermarks past it.
        await Api(carol).MarkReadAsync(sent.Id);

        var read = await ownerSocket.NextAsync("message_read", p => p.GetProperty("user_id").GetString() == carol);
        Assert.Equal(sent.Id, read.GetProperty("message_id").GetGuid());
        await bobSocket.AssertNoFrameAsync("message_delivered", Quiet);
        Assert.DoesNotContain(bobSocket.All(), f => f.GetProperty("type").GetString() != "connected");
    }

    [Fact]
    public async Task ParticipantRemoved_Leaving_ReachesTheRemainingMembersAndTheLeaver()
    {
        var (owner, bob) = (NewUser("owner"), NewUser("bob"));
        var group = await Api(owner).CreateGroupAsync("g", bob);
        var sockets = new[] { await ConnectAsync(owner), await ConnectAsync(bob) };

        await RemoveOkAsync(Api(bob), group.Id, bob);

        foreach (var socket in sockets)
        {
            var payload = await socket.NextAsync("participant_removed");
            AssertParticipantEvent(payload, group.Id, seq: 2, bob);
            Assert.Equal(bob, payload.GetProperty("removed_by").GetString());
        }
    }

    [Fact]
    public async Task ParticipantEvents_ReachEveryDeviceOfTheUserConcerned()
    {
        var (owner, carol) = (NewUser("owner"), NewUser("carol"));
        var group = await Api(owner).CreateGroupAsync("g");
        var phone = await ConnectAsync(carol, "phone");
        var laptop = await ConnectAsync(carol, "laptop");

        await AddOkAsync(Api(owner), group.Id, carol);
        await RemoveOkAsync(Api(owner), group.Id, carol);

        foreach (var device in new[] { phone, laptop })
        {
            AssertParticipantEvent(await device.NextAsync("participant_added"), group.Id, seq: 2, carol);
            AssertParticipantEvent(await device.NextAsync("participant_removed"), group.Id, seq: 3, carol);
        }
    }

    [Fact]
    public async Task EveryDurableChange_TakesTheNextSeq_AndNothingElseDoes()
    {
        var (alice, bob, carol, dave) = (NewUser("alice"), NewUser("bob"), NewUser("carol"), NewUser("dave"));
        var aliceSocket = await ConnectAsync(alice);
        var bobSocket = await ConnectAsync(bob);

        var group = await Api(alice).CreateGroupAsync("g", bob);                                    // 1 conversation_created
        var first = await Api(alice).SendTextAsync(group.Id, "first");                               // 2 new_message
        await AddOkAsync(Api(alice), group.Id, carol);                                               // 3 participant_added
        await SetRoleOkAsync(Api(alice), group.Id, bob, "admin");                                    // 4 participant_updated
        await ParleyApi.ReadAsync<JsonElement>(await Api(alice).PutAsync($"/api/v1/messages/{first.Id}", new { content = "edited" })); // 5
        await ParleyApi.ReadAsync<JsonElement>(await Api(bob).DeleteAsync($"/api/v1/messages/{first.Id}"));              // 6 message_deleted
        await SetRoleOkAsync(Api(alice), group.Id, bob, "owner");                                    // 7, 8 participant_updated
        // None of these is a durable change of the conversation: no seq.
        await ParleyApi.ProblemAsync(await AddAsync(Api(carol), group.Id, dave), HttpStatusCode.Forbidden);
        await AddOkAsync(Api(bob), group.Id, carol);
        await ParleyApi.ProblemAsync(await SetRoleAsync(Api(carol), group.Id, carol, "admin"), HttpStatusCode.Forbidden);
        await TypingAsync(carol, group.Id);
        await RemoveOkAsync(Api(bob), group.Id, carol);                                              // 9 participant_removed
        var last = await Api(bob).SendTextAsync(group.Id, "last");                                  // 10 new_message
        await Api(alice).MarkReadAsync(last.Id);

        await bobSocket.NextAsync("new_message", m => m.GetProperty("message").GetProperty("id").GetGuid() == last.Id);
        await aliceSocket.NextAsync("new_message", m => m.GetProperty("message").GetProperty("id").GetGuid() == last.Id);
        string[] expected =
        [
            "conversation_created", "new_message", "participant_added", "participant_updated", "message_edited", "message_deleted",
            "participant_updated", "participant_updated", "participant_removed", "new_message",
        ];
        foreach (var socket in new[] { aliceSocket, bobSocket })
        {
            var events = ConversationEvents(socket, group.Id);
            Assert.Equal(expected, events.Select(e => e.Type));
            Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), events.Select(e => e.Seq));
        }

        Assert.Equal(2, first.Seq);
        Assert.Equal(10, last.Seq);
        Assert.Equal(10, (await Api(alice).GetConversationAsync(group.Id)).LastSeq);
    }

    [Fact]
    public async Task ConcurrentSendsAndMembershipChanges_TakeContiguousSeqsDeliveredInOrder()
    {
        var owner = NewUser("owner");
        var senders = new[] { NewUser("s1"), NewUser("s2"), NewUser("s3") };
        var joiners = Enumerable.Range(0, 5).Select(i => NewUser($"j{i}")).ToArray();
        var group = await Api(owner).CreateGroupAsync("busy", senders);
        var ownerSocket = await ConnectAsync(owner);
        var senderSocket = await ConnectAsync(senders[0]);

        var sends = senders.SelectMany(sender => Enumerable.Range(0, 5).Select(i => (sender, i))).Select(async x =>
        {
            await Api(x.sender).SendTextAsync(group.Id, $"{x.sender} {x.i}");
        });
        var changes = joiners.Select(async joiner =>
        {
            await AddOkAsync(Api(owner), group.Id, joiner);
            await SetRoleOkAsync(Api(owner), group.Id, joiner, "admin");
            await RemoveOkAsync(Api(owner), group.Id, joiner);
        });
        await Task.WhenAll(sends.Concat(changes));

        // 1 creation + 15 messages + 5 × (added, updated, removed).
        const int expected = 1 + 15 + 15;
        Assert.Equal(expected, (await Api(owner).GetConversationAsync(group.Id)).LastSeq);
        foreach (var socket in new[] { ownerSocket, senderSocket })
        {
            // Creation happened before the sockets connected; the rest arrives live.
            while (ConversationEvents(socket, group.Id).Count < expected - 1)
            {
                await socket.NextAnyAsync();
            }

            var events = ConversationEvents(socket, group.Id);
            Assert.Equal(Enumerable.Range(2, expected - 1).Select(i => (long)i), events.Select(e => e.Seq));
            Assert.Equal(15, events.Count(e => e.Type == "new_message"));
            Assert.Equal(5, events.Count(e => e.Type == "participant_added"));
            Assert.Equal(5, events.Count(e => e.Type == "participant_updated"));
            Assert.Equal(5, events.Count(e => e.Type == "participant_removed"));
        }
    }

    private static void AssertParticipantEvent(JsonElement payload, Guid conversationId, long seq, string userId)
    {
        Assert.Equal(conversationId, payload.GetProperty("conversation_id").GetGuid());
        Assert.Equal(seq, payload.GetProperty("seq").GetInt64());
        Assert.Equal(userId, payload.GetProperty("user_id").GetString());
        Assert.True(payload.TryGetProperty("timestamp", out _), $"no timestamp in {payload}");
    }

    private async Task TypingAsync(string userId, Guid conversationId)
    {
        using var response = await Api(userId).PostAsync($"/api/v1/conversations/{conversationId}/typing", new { is_typing = true });
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
    }

    private ParleyApi Api(string userId)
    {
        var client = _factory.Api(userId);
        _clients.Add(client);
        return client;
    }

    private async Task<WsClient> ConnectAsync(string userId, string? deviceId = null)
    {
        var socket = await WsClient.ConnectAsync(_factory, userId, deviceId: deviceId);
        _sockets.Add(socket);
        return socket;
    }
}

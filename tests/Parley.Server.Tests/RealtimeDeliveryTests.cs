using System.Net;
using System.Text.Json;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Live conversation events: every device of every member gets each one (the sending device included), in seq
/// order and without duplicates; users outside the conversation get nothing.
/// </summary>
public sealed class RealtimeDeliveryTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task NewMessage_SentOverRest_ReachesEveryDeviceOfEveryMemberIncludingTheSender()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone", "laptop").Connect("bob", "phone").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob"));

        var sent = await alice.SendTextAsync(conversation.Id, "hello");

        foreach (var device in new[] { alicePhone, aliceLaptop, bobPhone })
        {
            var payload = await device.NextAsync("new_message");
            Assert.Equal(sent.Id, payload.GetProperty("message").GetProperty("id").GetGuid());
            Assert.Equal("hello", payload.GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(sent.Seq, payload.GetProperty("message").GetProperty("seq").GetInt64());
        }
    }

    [Fact]
    public async Task NewMessage_Payload_IsTheMessageAsRestReturnsItAndATimestamp()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var bob = chat.Socket("bob");

        var sent = await alice.SendTextAsync(conversation.Id, "same shape", clientMessageId: "c-1");

        var payload = await bob.NextAsync("new_message");
        var live = Wire.Read<Message>(payload.GetProperty("message"));
        Assert.Equal(sent, live with { Mentions = sent.Mentions });
        Assert.Equal(conversation.Id, payload.GetProperty("message").GetProperty("conversation_id").GetGuid());
        Assert.Equal("alice", payload.GetProperty("message").GetProperty("sender_id").GetString());
        Assert.Equal("c-1", payload.GetProperty("message").GetProperty("client_message_id").GetString());
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("message").GetProperty("edited_at").ValueKind);
        Assert.InRange(payload.GetProperty("timestamp").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
    }

    [Fact]
    public async Task MessageEdited_BySender_ReachesEveryDeviceWithTheEditedMessageAndItsOwnSeq()
    {
        await using var chat = await _factory.GroupChat("edits", "alice", "bob", "carol")
            .Connect("alice", "phone", "laptop")
            .Connect("bob", "phone")
            .Connect("carol", "phone").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob"));
        var carolPhone = chat.Socket("carol");
        var sent = await alice.SendTextAsync(conversation.Id, "first");

        var response = await alice.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "second" });
        var edited = await ParleyApi.ReadAsync<Message>(response);

        long? editSeq = null;
        foreach (var device in new[] { alicePhone, aliceLaptop, bobPhone, carolPhone })
        {
            var payload = await device.NextAsync("message_edited");
            var message = payload.GetProperty("message");
            Assert.Equal(sent.Id, message.GetProperty("id").GetGuid());
            Assert.Equal("second", message.GetProperty("content").GetString());
            Assert.Equal(sent.Seq, message.GetProperty("seq").GetInt64());
            Assert.Equal(edited.EditedAt, message.GetProperty("edited_at").GetDateTimeOffset());
            var seq = payload.GetProperty("seq").GetInt64();
            Assert.True(seq > sent.Seq, $"the edit's seq {seq} must come after the message's {sent.Seq}");
            Assert.True(editSeq is null || editSeq == seq, "every device sees the same edit seq");
            editSeq = seq;
            Assert.Equal(JsonValueKind.String, payload.GetProperty("timestamp").ValueKind);
        }
    }

    [Fact]
    public async Task MessageDeleted_ByGroupAdmin_ReachesEveryDeviceWithSeqAndDeletedBy()
    {
        await using var chat = await _factory.GroupChat("deletes", "alice", "bob", "carol")
            .Connect("alice", "phone")
            .Connect("bob", "phone", "laptop")
            .Connect("carol", "phone").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (alicePhone, bobPhone, bobLaptop) = (chat.Socket("alice"), chat.Socket("bob", "phone"), chat.Socket("bob", "laptop"));
        var carolPhone = chat.Socket("carol");
        var sent = await bob.SendTextAsync(conversation.Id, "regrettable");

        var response = await alice.DeleteAsync($"/api/v1/messages/{sent.Id}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        long? deleteSeq = null;
        foreach (var device in new[] { alicePhone, bobPhone, bobLaptop, carolPhone })
        {
            var payload = await device.NextAsync("message_deleted");
            Assert.Equal(sent.Id, payload.GetProperty("message_id").GetGuid());
            Assert.Equal(conversation.Id, payload.GetProperty("conversation_id").GetGuid());
            Assert.Equal("alice", payload.GetProperty("deleted_by").GetString());
            var seq = payload.GetProperty("seq").GetInt64();
            Assert.True(seq > sent.Seq, $"the delete's seq {seq} must come after the message's {sent.Seq}");
            Assert.True(deleteSeq is null || deleteSeq == seq, "every device sees the same delete seq");
            deleteSeq = seq;
            Assert.Equal(JsonValueKind.String, payload.GetProperty("timestamp").ValueKind);
            Assert.DoesNotContain("regrettable", payload.GetRawText(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ConversationEvents_SendEditDelete_ArriveOnEveryDeviceInSeqOrder()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone").Connect("bob", "phone").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        var first = await alice.SendTextAsync(conversation.Id, "one");
        Assert.Equal(HttpStatusCode.OK, (await alice.PutAsync($"/api/v1/messages/{first.Id}", new { content = "one, edited" })).StatusCode);
        var second = await alice.SendTextAsync(conversation.Id, "two");
        Assert.Equal(HttpStatusCode.OK, (await alice.DeleteAsync($"/api/v1/messages/{first.Id}")).StatusCode);

        foreach (var device in new[] { alicePhone, bobPhone })
        {
            await device.NextAsync("message_deleted");
            await device.PingAsync();
            var events = device.All()
                .Where(f => f.GetProperty("type").GetString() is "new_message" or "message_edited" or "message_deleted")
                .Select(f => (Type: f.GetProperty("type").GetString(), Seq: EventSeq(f)))
                .ToList();
            Assert.Equal(["new_message", "message_edited", "new_message", "message_deleted"], events.Select(e => e.Type));
            AssertStrictlyIncreasing(events.Select(e => e.Seq).ToList(), device.UserId);
            Assert.Equal(second.Seq, events[2].Seq);
        }
    }

    [Fact]
    public async Task ConversationEvents_UserOutsideTheConversation_ReceivesNothing()
    {
        await using var chat = await _factory.GroupChat("private", "alice", "bob").Connect("mallory", "phone", "laptop").Connect("bob").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (outsider, outsiderLaptop, bobPhone) = (chat.Socket("mallory", "phone"), chat.Socket("mallory", "laptop"), chat.Socket("bob"));

        var sent = await alice.SendTextAsync(conversation.Id, "secret");
        await alice.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "secret, edited" });
        await bob.MarkReadAsync(sent.Id);
        await bob.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });
        await alice.DeleteAsync($"/api/v1/messages/{sent.Id}");

        // The member got everything (so the events were published) ...
        await bobPhone.NextAsync("new_message");
        await bobPhone.NextAsync("message_edited");
        await bobPhone.NextAsync("message_read");
        await bobPhone.NextAsync("message_deleted");
        // ... and the outsider, connected all along, nothing at all.
        await outsider.AssertSilentAsync();
        await outsiderLaptop.AssertSilentAsync(TimeSpan.FromMilliseconds(100));
        Assert.Single(outsider.All());
        Assert.Single(outsiderLaptop.All());
    }

    [Fact]
    public async Task NewMessage_ManyConcurrentSendsBySeveralUsers_EveryDeviceGetsAllInStrictSeqOrder()
    {
        const int PerUser = 20;
        string[] users = ["alice", "bob", "carol"];
        using var owner = _factory.Api("alice");
        var conversation = await owner.CreateGroupAsync("busy", "bob", "carol");
        var devices = new List<WsClient>();
        try
        {
            foreach (var user in users)
            {
                devices.Add(await WsClient.ConnectAsync(_factory, user, deviceId: "phone"));
                devices.Add(await WsClient.ConnectAsync(_factory, user, deviceId: "laptop"));
            }

            var outsider = await WsClient.ConnectAsync(_factory, "dave");
            devices.Add(outsider);

            var apis = users.Select(u => _factory.Api(u)).ToArray();
            var sends = apis.SelectMany((api, u) => Enumerable.Range(0, PerUser).Select(i => api.SendTextAsync(conversation.Id, $"{users[u]} {i}")));
            var sent = await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            foreach (var api in apis)
            {
                api.Dispose();
            }

            var expected = sent.Select(m => m.Seq).Order().ToList();
            Assert.Equal(users.Length * PerUser, expected.Distinct().Count());
            foreach (var device in devices.Where(d => d != outsider))
            {
                for (var i = 0; i < expected.Count; i++)
                {
                    await device.NextAsync("new_message");
                }

                // After the pong, every frame of those sends for this socket has arrived: none may be extra.
                await device.PingAsync();
                var seqs = device.All()
                    .Where(f => f.GetProperty("type").GetString() == "new_message")
                    .Select(f => f.GetProperty("payload").GetProperty("message").GetProperty("seq").GetInt64())
                    .ToList();
                AssertStrictlyIncreasing(seqs, device.UserId);
                Assert.Equal(expected, seqs);
            }

            await outsider.AssertSilentAsync();
        }
        finally
        {
            foreach (var device in devices)
            {
                await device.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Connect_WhileMessagesAreBeingSent_ConnectedIsAlwaysTheFirstFrame()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var sender = Task.Run(
            async () =>
            {
                var sentCount = 0;
                while (!stop.IsCancellationRequested)
                {
                    await alice.SendTextAsync(conversation.Id, "busy");
                    sentCount++;
                }

                return sentCount;
            },
            TestContext.Current.CancellationToken);

        for (var i = 0; i < 8; i++)
        {
            // ConnectAsync asserts that the first frame is "connected"; then live messages follow on the same socket.
            await using var bob = await WsClient.ConnectAsync(_factory, "bob");
            var next = await bob.NextAnyAsync();
            Assert.Equal("new_message", next.GetProperty("type").GetString());
        }

        await stop.CancelAsync();
        Assert.True(await sender.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken) > 0);
    }

    [Fact]
    public async Task ParticipantEvents_AddRoleRemove_ReachMembersAndTheUserConcernedInSeqOrder()
    {
        await using var chat = await _factory.GroupChat("members", "alice", "bob").Connect("alice").Connect("bob").Connect("carol").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone, carolPhone) = (chat.Socket("alice"), chat.Socket("bob"), chat.Socket("carol"));

        Assert.Equal(HttpStatusCode.OK, (await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/participants", new { user_ids = new[] { "carol" } })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await alice.PatchAsync($"/api/v1/conversations/{conversation.Id}/participants/carol", new { role = "admin" })).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{conversation.Id}/participants/bob")).StatusCode);

        foreach (var device in new[] { alicePhone, carolPhone })
        {
            var added = await device.NextAsync("participant_added");
            Assert.Equal(conversation.Id, added.GetProperty("conversation_id").GetGuid());
            Assert.Equal("carol", added.GetProperty("user_id").GetString());
            Assert.Equal("member", added.GetProperty("role").GetString());
            Assert.Equal("alice", added.GetProperty("added_by").GetString());
            var updated = await device.NextAsync("participant_updated");
            Assert.Equal("carol", updated.GetProperty("user_id").GetString());
            Assert.Equal("admin", updated.GetProperty("role").GetString());
            var removed = await device.NextAsync("participant_removed");
            Assert.Equal("bob", removed.GetProperty("user_id").GetString());
            Assert.Equal("alice", removed.GetProperty("removed_by").GetString());
            AssertStrictlyIncreasing(
                [added.GetProperty("seq").GetInt64(), updated.GetProperty("seq").GetInt64(), removed.GetProperty("seq").GetInt64()], device.UserId);
        }

        // Bob, the user removed, learns of it too.
        Assert.Equal("bob", (await bobPhone.NextAsync("participant_removed")).GetProperty("user_id").GetString());
    }

    [Fact]
    public async Task ConversationEvents_AfterAMemberIsRemoved_ReachNoneOfTheirDevices()
    {
        await using var chat = await _factory.GroupChat("leaving", "alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var before = await alice.SendTextAsync(conversation.Id, "before");
        var bobPhone = await chat.ConnectAsync("bob", "phone");
        var bobLaptop = await chat.ConnectAsync("bob", "laptop");
        var alicePhone = await chat.ConnectAsync("alice");
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{conversation.Id}/participants/bob")).StatusCode);
        await bobPhone.NextAsync("participant_removed");
        await bobLaptop.NextAsync("participant_removed");

        await alice.SendTextAsync(conversation.Id, "after");
        await alice.PutAsync($"/api/v1/messages/{before.Id}", new { content = "before, edited" });
        await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });

        await alicePhone.NextAsync("new_message");
        await alicePhone.NextAsync("message_edited");
        await bobPhone.AssertSilentAsync();
        await bobLaptop.AssertSilentAsync(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task MessageEdited_MessageFromBeforeAMemberJoined_ThatMemberGetsOnlyAHiddenEventForThePosition()
    {
        await using var chat = await _factory.GroupChat("late joiner", "alice", "bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var old = await alice.SendTextAsync(conversation.Id, "before carol");
        Assert.Equal(HttpStatusCode.OK, (await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/participants", new { user_ids = new[] { "carol" } })).StatusCode);
        var bobPhone = await chat.ConnectAsync("bob");
        var carolPhone = await chat.ConnectAsync("carol");

        var edited = await ParleyApi.ReadAsync<Storage.Message>(
            await alice.PutAsync($"/api/v1/messages/{old.Id}", new { content = "before carol, edited" }));
        var later = await alice.SendTextAsync(conversation.Id, "for everyone");

        var bobEdit = await bobPhone.NextAsync("message_edited");
        Assert.Equal(old.Id, bobEdit.GetProperty("message").GetProperty("id").GetGuid());
        var editSeq = bobEdit.GetProperty("seq").GetInt64();
        // Carol cannot see the old message: she gets the edit's position without content, so she sees no gap.
        var hidden = await carolPhone.NextAnyAsync();
        Assert.Equal("hidden_event", hidden.GetProperty("type").GetString());
        Assert.Equal(conversation.Id, hidden.GetProperty("payload").GetProperty("conversation_id").GetGuid());
        Assert.Equal(editSeq, hidden.GetProperty("payload").GetProperty("seq").GetInt64());
        Assert.DoesNotContain("edited", hidden.GetRawText(), StringComparison.Ordinal);
        Assert.Equal("before carol, edited", edited.Content);
        var next = await carolPhone.NextAnyAsync();
        Assert.Equal("new_message", next.GetProperty("type").GetString());
        Assert.Equal(later.Id, next.GetProperty("payload").GetProperty("message").GetProperty("id").GetGuid());
    }

    private static long EventSeq(JsonElement frame)
    {
        var payload = frame.GetProperty("payload");
        return frame.GetProperty("type").GetString() == "new_message"
            ? payload.GetProperty("message").GetProperty("seq").GetInt64()
            : payload.GetProperty("seq").GetInt64();
    }

    private static void AssertStrictlyIncreasing(IReadOnlyList<long> seqs, string who)
    {
        for (var i = 1; i < seqs.Count; i++)
        {
            Assert.True(seqs[i] > seqs[i - 1], $"{who}: seq {seqs[i]} arrived after {seqs[i - 1]} (position {i}): {string.Join(",", seqs)}");
        }
    }
}

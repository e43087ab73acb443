using System.Net;
using System.Text.Json;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Read and delivered watermarks over the socket: <c>read_receipt</c> and <c>ack</c> frames, and the
/// <c>message_read</c> / <c>message_delivered</c> events they cause, in both device modes.
/// </summary>
public sealed class ReceiptEventsTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task ReadReceipt_OverSocket_MovesWatermarkAndEveryMembersDevicesGetMessageRead()
    {
        await using var chat = await _factory.GroupChat("reads", "alice", "bob", "carol")
            .Connect("alice", "phone", "laptop")
            .Connect("bob", "phone", "laptop")
            .Connect("carol", "phone").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob", "phone"));
        var (bobLaptop, carolPhone) = (chat.Socket("bob", "laptop"), chat.Socket("carol"));
        await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");

        await bobPhone.SendAsync("read_receipt", new { message_id = second.Id });

        foreach (var device in new[] { alicePhone, aliceLaptop, bobPhone, bobLaptop, carolPhone })
        {
            var read = await device.NextAsync("message_read", p => p.GetProperty("user_id").GetString() == "bob");
            AssertReceipt(read, conversation.Id, "bob", second);
        }

        var state = await bob.GetConversationAsync(conversation.Id);
        Assert.Equal(second.Seq, state.ReadUpToSeq);
        Assert.Equal(second.Id, state.LastReadMessageId);
        Assert.Equal(1, state.UnreadCount);
    }

    [Fact]
    public async Task ReadReceipt_OverRest_EveryMembersDevicesGetMessageRead()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        var sent = await alice.SendTextAsync(conversation.Id, "hi");

        await bob.MarkReadAsync(sent.Id);

        AssertReceipt(await alicePhone.NextAsync("message_read"), conversation.Id, "bob", sent);
        AssertReceipt(await bobPhone.NextAsync("message_read"), conversation.Id, "bob", sent);
    }

    [Fact]
    public async Task ReadReceipt_OfAMessageFromBeforeAMemberJoined_DoesNotReachThatMember()
    {
        await using var chat = await _factory.GroupChat("g", "alice", "bob").OpenAsync();
        var (alice, bob, group) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var early = await alice.SendTextAsync(group.Id, "before carol");
        await ParleyApi.ReadAsync<Conversation>(
            await alice.PostAsync($"/api/v1/conversations/{group.Id}/participants", new { user_ids = new[] { "carol" } }));
        var carolPhone = await chat.ConnectAsync("carol");
        var alicePhone = await chat.ConnectAsync("alice");

        await bob.MarkReadAsync(early.Id);

        // Alice (who can see the message) is told; Carol, who joined after it, learns nothing about it.
        var read = await alicePhone.NextAsync("message_read");
        Assert.Equal(early.Id, read.GetProperty("message_id").GetGuid());
        await carolPhone.AssertNoFrameAsync("message_read", TimeSpan.FromSeconds(1));

        // A message Carol can see is announced to her as usual.
        var late = await alice.SendTextAsync(group.Id, "after carol");
        await bob.MarkReadAsync(late.Id);
        var visible = await carolPhone.NextAsync("message_read");
        Assert.Equal(late.Id, visible.GetProperty("message_id").GetGuid());
    }

    [Fact]
    public async Task ReadReceipt_OlderThanTheWatermark_IsANoOpWithoutEventOrError()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        var third = await alice.SendTextAsync(conversation.Id, "three");

        await bobPhone.SendAsync("read_receipt", new { message_id = second.Id });
        await bobPhone.SendAsync("read_receipt", new { message_id = first.Id });
        await bobPhone.SendAsync("read_receipt", new { message_id = second.Id });
        await bobPhone.SendAsync("read_receipt", new { message_id = third.Id });

        // A socket's events arrive in the order they were published: had the no-ops published anything,
        // it would arrive between the read of "two" and the read of "three".
        AssertReceipt(await alicePhone.NextAsync("message_read"), conversation.Id, "bob", second);
        AssertReceipt(await alicePhone.NextAsync("message_read"), conversation.Id, "bob", third);
        await bobPhone.PingAsync();
        Assert.DoesNotContain(bobPhone.All(), f => f.GetProperty("type").GetString() == "error");
        Assert.Equal(2, bobPhone.All().Count(f => f.GetProperty("type").GetString() == "message_read"));
        await alicePhone.AssertNoFrameAsync("message_read", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task ReadReceipt_ByUserOutsideTheConversation_ErrorNotFoundAndNoEvent()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("mallory").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, mallory) = (chat.Socket("alice"), chat.Socket("mallory"));
        var sent = await alice.SendTextAsync(conversation.Id, "private");

        await mallory.SendAsync("""{"type":"read_receipt","id":"spy","payload":{"message_id":"MID"}}""".Replace("MID", sent.Id.ToString(), StringComparison.Ordinal));

        await mallory.NextErrorAsync("not_found", id: "spy");
        await alicePhone.AssertNoFrameAsync("message_read", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Delivered_RecipientDeviceWithoutAcks_CountsOnceTheFrameWasSentToItsSocket()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone", "laptop").Connect("bob", "phone").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob"));

        var sent = await alice.SendTextAsync(conversation.Id, "did you get this?");

        await bobPhone.NextAsync("new_message");
        foreach (var device in new[] { alicePhone, aliceLaptop })
        {
            AssertReceipt(await device.NextAsync("message_delivered"), conversation.Id, "bob", sent);
        }
    }

    [Fact]
    public async Task Delivered_RecipientsOnlyDeviceUsesAcks_NotCountedUntilItAcks()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone", "laptop").ConnectWithAcks("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob"));
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await bobPhone.NextAsync("new_message");
        await bobPhone.NextAsync("new_message");

        // The frames reached bob's socket, but his device has not acknowledged them.
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);

        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = first.Seq });
        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", first);
        AssertReceipt(await aliceLaptop.NextAsync("message_delivered"), conversation.Id, "bob", first);

        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = second.Seq });
        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", second);
        AssertReceipt(await aliceLaptop.NextAsync("message_delivered"), conversation.Id, "bob", second);
    }

    [Fact]
    public async Task Delivered_ASenderRemovedAndAddedAgain_LearnsNothingOfWhatWasSentMeanwhile()
    {
        // Bob's message, then he is removed, alice writes, he is added again: carol's ack covers both messages. Bob's
        // message is from before his re-joining, so he is told nothing, least of all the id of alice's message, which is
        // hidden from him.
        await using var chat = await _factory.GroupChat("rejoin", "alice", "bob", "carol")
            .Connect("alice").Connect("bob").ConnectWithAcks("carol").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (alicePhone, bobPhone, carolPhone) = (chat.Socket("alice"), chat.Socket("bob"), chat.Socket("carol"));
        await bob.SendTextAsync(conversation.Id, "before I leave");
        // Alice's socket (no acks) took it live, which delivers it: bob, still a member, is told so. Awaited here, or its
        // flush may reach bob only after he is back, and be taken for the receipt he must not get.
        await bobPhone.NextAsync("message_delivered", p => p.GetProperty("user_id").GetString() == "alice");
        await MembershipCalls.RemoveOkAsync(alice, conversation.Id, "bob");
        var hidden = await alice.SendTextAsync(conversation.Id, "while bob is out");
        var added = await MembershipCalls.AddOkAsync(alice, conversation.Id, "bob");
        await bobPhone.NextAsync("participant_added", p => p.GetProperty("user_id").GetString() == "bob");

        await carolPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = added.LastSeq });

        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "carol", hidden);
        await bobPhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Delivered_AckIsCumulative_OneEventUpToTheAckedSeq()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").ConnectWithAcks("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        Message last = null!;
        for (var i = 0; i < 3; i++)
        {
            last = await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = last.Seq });

        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", last);
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Delivered_RepeatedOrOlderAck_NoNewEvent()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").ConnectWithAcks("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = second.Seq });
        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", second);

        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = second.Seq });
        await bobPhone.SendAsync("ack", new { conversation_id = conversation.Id, seq = first.Seq });

        await bobPhone.PingAsync();
        Assert.DoesNotContain(bobPhone.All(), f => f.GetProperty("type").GetString() == "error");
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Delivered_SendersOwnDevices_NeverMakeTheSenderDeliverToHimself()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone", "laptop").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, aliceLaptop) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"));

        // Bob is offline: only alice's own devices receive the message.
        await alice.SendTextAsync(conversation.Id, "anyone there?");
        await alicePhone.NextAsync("new_message");
        await aliceLaptop.NextAsync("new_message");
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);

        var bobPhone = await chat.ConnectAsync("bob");
        var second = await alice.SendTextAsync(conversation.Id, "there you are");
        await bobPhone.NextAsync("new_message");

        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", second);
        AssertReceipt(await aliceLaptop.NextAsync("message_delivered"), conversation.Id, "bob", second);
        Assert.DoesNotContain(
            alicePhone.All().Concat(aliceLaptop.All()),
            f => f.GetProperty("type").GetString() == "message_delivered" && f.GetProperty("payload").GetProperty("user_id").GetString() == "alice");
    }

    [Fact]
    public async Task Delivered_SenderAlsoRecipientOfOthersMessages_ReportsOnlyForThoseMessages()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        var (alice, bob, conversation) = (chat.Api("alice"), chat.Api("bob"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        var fromBob = await bob.SendTextAsync(conversation.Id, "from bob");

        // Alice's socket received bob's message: bob learns alice has it; alice is not told about herself.
        AssertReceipt(await bobPhone.NextAsync("message_delivered"), conversation.Id, "alice", fromBob);
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Read_RecipientUsesAcksAndNeverAcked_ReadImpliesDelivered()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").ConnectWithAcks("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        var sent = await alice.SendTextAsync(conversation.Id, "read me");
        await bobPhone.NextAsync("new_message");
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);

        await bobPhone.SendAsync("read_receipt", new { message_id = sent.Id });

        AssertReceipt(await alicePhone.NextAsync("message_delivered"), conversation.Id, "bob", sent);
        AssertReceipt(await alicePhone.NextAsync("message_read"), conversation.Id, "bob", sent);
    }

    [Fact]
    public async Task Ack_ByUserOutsideTheConversation_ErrorNotFoundAndNoEvent()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").ConnectWithAcks("mallory").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, mallory) = (chat.Socket("alice"), chat.Socket("mallory"));
        var sent = await alice.SendTextAsync(conversation.Id, "private");

        await mallory.SendAsync(
            """{"type":"ack","id":"a-1","payload":{"conversation_id":"CID","seq":SEQ}}"""
                .Replace("CID", conversation.Id.ToString(), StringComparison.Ordinal)
                .Replace("SEQ", sent.Seq.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));

        await mallory.NextErrorAsync("not_found", id: "a-1");
        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Ack_PastTheLastSeq_ErrorValidationFailedAndTheNextMessageNotDelivered()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").ConnectWithAcks("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));
        var sent = await alice.SendTextAsync(conversation.Id, "one");
        await bobPhone.NextAsync("new_message");

        // Nothing past the message exists: taken as it is, the message sent next would count as delivered before bob has it.
        await bobPhone.SendAsync(
            """{"type":"ack","id":"a-1","payload":{"conversation_id":"CID","seq":1000000}}"""
                .Replace("CID", conversation.Id.ToString(), StringComparison.Ordinal));
        var error = await bobPhone.NextErrorAsync("validation_failed", id: "a-1");
        Assert.Contains($"last seq ({sent.Seq})", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await alice.SendTextAsync(conversation.Id, "two");

        await alicePhone.AssertNoFrameAsync("message_delivered", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Connect_AcksParameterNotABoolean_Returns400WithoutUpgrade()
    {
        using var raw = await RawSocket.ConnectAsync(
            _factory, query: "acks=sometimes", configure: o => o.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("bob")));

        Assert.False(raw.Upgraded);
        Assert.Equal(HttpStatusCode.BadRequest, raw.Status);
    }

    private static void AssertReceipt(JsonElement payload, Guid conversationId, string userId, Message upTo)
    {
        Assert.Equal(conversationId, payload.GetProperty("conversation_id").GetGuid());
        Assert.Equal(userId, payload.GetProperty("user_id").GetString());
        Assert.Equal(upTo.Id, payload.GetProperty("message_id").GetGuid());
        Assert.Equal(upTo.Seq, payload.GetProperty("up_to_seq").GetInt64());
        Assert.InRange(payload.GetProperty("timestamp").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
    }
}

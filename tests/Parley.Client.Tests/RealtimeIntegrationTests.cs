using System.Net;
using Parley.Client.Tests.Infrastructure;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// <see cref="ParleyRealtime"/> against the real server over real sockets: live events on several devices,
/// acknowledgements turning into delivered receipts, sends over the socket, resume after being offline, and
/// reconnects after the network dropped or the token expired.
/// </summary>
public sealed class RealtimeIntegrationTests(ServerFactory server) : IClassFixture<ServerFactory>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string NewUser(string name) => $"{name}-{Guid.NewGuid():N}"[..20];

    [Fact]
    public async Task LiveEvents_TwoUsersThreeDevices_EveryDeviceGetsEveryMessageOnceInOrder()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var phone = await Device.ConnectAsync(server, alice, "phone");
        await using var laptop = await Device.ConnectAsync(server, alice, "laptop");
        await using var bobs = await Device.ConnectAsync(server, bob, "phone");
        var conversation = await phone.Client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var sent = new List<Guid>();
        for (var i = 0; i < 10; i++)
        {
            sent.Add((await phone.Client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"m{i}"), Ct)).Id);
        }

        foreach (var device in new[] { phone, laptop, bobs })
        {
            Assert.Equal(conversation.Id, (await device.NextAsync<ConversationCreatedEvent>()).Conversation.Id);
            Assert.Equal(sent, (await device.MessagesAsync(conversation.Id, 10)).Select(m => m.Id));
            Assert.Equal(Enumerable.Range(1, 11).Select(i => (long)i), device.Seen.OfType<ConversationEvent>().Select(e => e.Seq));
        }
    }

    [Fact]
    public async Task Ack_RecipientConsumesTheMessage_SenderGetsMessageDelivered()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var sender = await Device.ConnectAsync(server, alice, "phone");
        await using var recipient = await Device.ConnectAsync(server, bob, "phone");
        var conversation = await sender.Client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var message = await sender.Client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "hi"), Ct);

        await recipient.MessagesAsync(conversation.Id, 1);
        var next = recipient.ConsumeCurrentAsync();

        var delivered = await sender.NextAsync<MessageDeliveredEvent>();
        Assert.Equal((bob, message.Id, message.Seq), (delivered.UserId, delivered.MessageId, delivered.UpToSeq));
        Assert.False(next.IsCompleted);
    }

    [Fact]
    public async Task ReadReceiptAndTyping_OverTheSocket_ReachTheOtherMember()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var sender = await Device.ConnectAsync(server, alice, "phone");
        await using var reader = await Device.ConnectAsync(server, bob, "phone");
        var conversation = await sender.Client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var message = await sender.Client.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "hi"), Ct);
        await reader.MessagesAsync(conversation.Id, 1);

        Assert.True(reader.Realtime.TrySendTyping(conversation.Id, true));
        var typing = await sender.NextAsync<TypingEvent>();
        Assert.True(reader.Realtime.TrySendReadReceipt(message.Id));
        var read = await sender.NextAsync<MessageReadEvent>(e => e.UserId == bob);

        Assert.Equal((bob, true), (typing.UserId, typing.IsTyping));
        Assert.Equal(message.Seq, read.UpToSeq);
    }

    [Fact]
    public async Task SendAsync_OverTheSocket_AcknowledgedOnceAndDeliveredToEveryDevice()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var sender = await Device.ConnectAsync(server, alice, "phone");
        await using var recipient = await Device.ConnectAsync(server, bob, "phone");
        var conversation = await sender.Client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var message = await sender.Realtime.SendAsync(SendMessageRequest.Text(conversation.Id, "over the socket", "c-1"), Ct).WaitAsync(Device.Timeout, Ct);
        var retried = await sender.Realtime.SendAsync(SendMessageRequest.Text(conversation.Id, "over the socket", "c-1"), Ct).WaitAsync(Device.Timeout, Ct);
        var generated = await sender.Realtime.SendAsync(SendMessageRequest.Text(conversation.Id, "second"), Ct).WaitAsync(Device.Timeout, Ct);

        Assert.Equal((alice, "c-1"), (message.SenderId, message.ClientMessageId));
        Assert.Equal(message.Id, retried.Id);
        Assert.NotNull(generated.ClientMessageId);
        Assert.Equal([message.Id, generated.Id], (await recipient.MessagesAsync(conversation.Id, 2)).Select(m => m.Id));
        Assert.Equal([message.Id, generated.Id], (await sender.MessagesAsync(conversation.Id, 2)).Select(m => m.Id));
    }

    [Fact]
    public async Task SendAsync_NotAMember_ThrowsNotFound()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var owner = await Device.ConnectAsync(server, alice, "phone");
        await using var stranger = await Device.ConnectAsync(server, NewUser("eve"), "phone");
        var conversation = await owner.Client.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);

        var error = await Assert.ThrowsAsync<ParleyApiException>(
            () => stranger.Realtime.SendAsync(SendMessageRequest.Text(conversation.Id, "hi"), Ct).WaitAsync(Device.Timeout, Ct));

        Assert.Equal(ParleyErrorCodes.NotFound, error.Code);
    }

    [Fact]
    public async Task Resume_AfterBeingOffline_ExactlyTheMissedEventsInOrder()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var sender = server.Client(alice);
        var store = new InMemoryCursorStore();
        var conversation = await sender.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var before = new List<Guid>();
        await using (var first = await Device.ConnectAsync(server, bob, "phone", store))
        {
            for (var i = 0; i < 3; i++)
            {
                before.Add((await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"before {i}"), Ct)).Id);
            }

            Assert.Equal(before, (await first.MessagesAsync(conversation.Id, 3)).Select(m => m.Id));
            _ = first.ConsumeCurrentAsync();
            // The ack is answered with a cursor frame, which is persisted once everything before it was consumed.
            await EventuallyAsync(() => store.Checkpoint?.Positions.GetValueOrDefault(conversation.Id) == 4, "a checkpoint covering seq 4");
        }

        var missed = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            missed.Add((await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"missed {i}"), Ct)).Id);
        }

        await using var second = await Device.ConnectAsync(server, bob, "phone", store);
        var live = await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "live"), Ct);

        Assert.Equal([.. missed, live.Id], (await second.MessagesAsync(conversation.Id, 6)).Select(m => m.Id));
        Assert.Equal(Enumerable.Range(5, 6).Select(i => (long)i), second.Seen.OfType<ConversationEvent>().Select(e => e.Seq));
    }

    [Fact]
    public async Task Reconnect_NetworkDropped_ResumesWithoutLosingOrRepeatingEvents()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        await using var relay = new TcpRelay(server.BaseAddress);
        using var sender = server.Client(alice);
        var conversation = await sender.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        await using var device = await Device.ConnectAsync(server, bob, "phone", baseAddress: relay.Address);
        var first = await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "first"), Ct);
        Assert.Equal(first.Id, (await device.MessagesAsync(conversation.Id, 1))[0].Id);

        relay.DropAll();
        var whileDown = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            whileDown.Add((await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, $"while down {i}"), Ct)).Id);
        }

        Assert.Equal(whileDown, (await device.MessagesAsync(conversation.Id, 3)).Select(m => m.Id));
        Assert.True(relay.Accepted >= 2);
        var after = await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "after"), Ct);
        Assert.Equal(after.Id, (await device.MessagesAsync(conversation.Id, 1))[0].Id);
        Assert.Equal(Enumerable.Range(2, 5).Select(i => (long)i), device.Seen.OfType<MessageCreatedEvent>().Select(e => e.Seq));
    }

    [Fact]
    public async Task Reconnect_TokenExpired_ServerCloses4003AndTheClientComesBackWithAFreshToken()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var sender = server.Client(alice);
        var conversation = await sender.CreateConversationAsync(CreateConversationRequest.Direct(bob), Ct);
        var issued = 0;
        await using var device = await Device.ConnectAsync(server, bob, "phone", tokens: _ => ValueTask.FromResult(
            Interlocked.Increment(ref issued) == 1 ? ServerFactory.Token(bob, expires: DateTime.UtcNow.AddSeconds(2)) : ServerFactory.Token(bob)));
        var changes = device.Realtime.ReadStateChangesAsync(Ct).GetAsyncEnumerator(Ct);

        ConnectionStateChange change;
        do
        {
            Assert.True(await changes.MoveNextAsync().AsTask().WaitAsync(Device.Timeout, Ct));
            change = changes.Current;
        }
        while (change.State != ConnectionState.Reconnecting);

        Assert.Equal(4003, change.CloseStatus);
        var message = await sender.SendMessageAsync(SendMessageRequest.Text(conversation.Id, "after the new token"), Ct);
        Assert.Equal(message.Id, (await device.MessagesAsync(conversation.Id, 1))[0].Id);
        Assert.True(Volatile.Read(ref issued) >= 2);
        await changes.DisposeAsync();
    }

    [Fact]
    public async Task ConnectAsync_TokenSignedWithAnotherKey_FailsWith401()
    {
        using var client = new ParleyClient(server.BaseAddress, ParleyCredentials.Bearer(ServerFactory.Token("alice", key: new string('k', 48))));
        await using var realtime = new ParleyRealtime(client);

        var error = await Assert.ThrowsAsync<ParleyConnectionException>(() => realtime.ConnectAsync(Ct).WaitAsync(Device.Timeout, Ct));

        Assert.Equal(HttpStatusCode.Unauthorized, error.HandshakeStatus);
        Assert.Equal(ConnectionState.Failed, realtime.State);
    }

    private static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Device.Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            await Task.Delay(20, Ct);
        }
    }
}

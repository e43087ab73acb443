using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Typing indicators: they go to the other members' devices (never the typer's own), expire after 5 s without a
/// refresh, and end when the typer sends a message. Time is fake so that expiry is tested without waiting.
/// </summary>
public sealed class TypingTests : IAsyncLifetime
{
    private static readonly TimeSpan TypingTimeout = TimeSpan.FromSeconds(5);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public TypingTests() => _factory = new ParleyFactory(time: _time);

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Typing_OverSocket_ReachesOtherMembersDevicesButNotTheTypersOwn()
    {
        await using var chat = await _factory.GroupChat("typing", "alice", "bob", "carol")
            .Connect("alice", "phone", "laptop")
            .Connect("bob", "phone", "laptop")
            .Connect("carol").OpenAsync();
        var conversation = chat.Conversation;
        var (alicePhone, aliceLaptop, bobPhone) = (chat.Socket("alice", "phone"), chat.Socket("alice", "laptop"), chat.Socket("bob", "phone"));
        var (bobLaptop, carolPhone) = (chat.Socket("bob", "laptop"), chat.Socket("carol"));

        await alicePhone.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });

        foreach (var device in new[] { bobPhone, bobLaptop, carolPhone })
        {
            AssertTyping(await device.NextAsync("typing"), conversation.Id, "alice", isTyping: true);
        }

        await alicePhone.PingAsync();
        await aliceLaptop.AssertNoFrameAsync("typing", WsClientAssertions.Silence);
        Assert.DoesNotContain(alicePhone.All(), f => f.GetProperty("type").GetString() == "typing");
    }

    [Fact]
    public async Task Typing_OverRest_ReachesOtherMembersDevicesButNotTheTypersOwn()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        var response = await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        AssertTyping(await bobPhone.NextAsync("typing"), conversation.Id, "alice", isTyping: true);
        await alicePhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Typing_InAConversationLargerThanTheLimit_IsAcceptedAndNotBroadcast()
    {
        await using var factory = new ParleyFactory(s => s["Realtime:TypingMaxConversationSize"] = "3");
        factory.StartKestrel();
        await using var chat = await factory.GroupChat("large", "alice", "bob", "carol", "dave").Connect("alice").Connect("bob").OpenAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var bobPhone = chat.Socket("bob");

        var response = await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });
        await chat.Socket("alice").SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        await bobPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);

        // At the limit (dave leaves: three members), indicators go out again.
        Assert.Equal(HttpStatusCode.NoContent, (await chat.Api("dave").DeleteAsync($"/api/v1/conversations/{conversation.Id}/participants/dave")).StatusCode);
        await alice.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });
        var typing = await bobPhone.NextAsync("typing");
        Assert.Equal((conversation.Id, "alice", true), (typing.GetProperty("conversation_id").GetGuid(), typing.GetProperty("user_id").GetString(), typing.GetProperty("is_typing").GetBoolean()));
    }

    [Fact]
    public async Task Typing_StoppedExplicitly_OthersGetIsTypingFalse()
    {
        await using var chat = await AliceTypingToBobAsync();
        var conversation = chat.Conversation;
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        await alicePhone.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = false });

        AssertTyping(await bobPhone.NextAsync("typing"), conversation.Id, "alice", isTyping: false);
    }

    [Fact]
    public async Task Typing_NotRefreshed_ExpiresAfterFiveSecondsAndOthersGetIsTypingFalse()
    {
        await using var chat = await AliceTypingToBobAsync();
        var conversation = chat.Conversation;
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        await _time.AdvanceInStepsAsync(TypingTimeout - TimeSpan.FromSeconds(1));
        await bobPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);

        // The expiry check runs four times per timeout: by 1.5 s past the deadline it must have run.
        await _time.AdvanceInStepsAsync(TimeSpan.FromSeconds(2.5));
        AssertTyping(await bobPhone.NextAsync("typing"), conversation.Id, "alice", isTyping: false);
        await alicePhone.AssertNoFrameAsync("typing", TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task Typing_RefreshedBeforeExpiry_StaysOnUntilFiveSecondsAfterTheLastRefresh()
    {
        await using var chat = await AliceTypingToBobAsync();
        var conversation = chat.Conversation;
        var (alicePhone, bobPhone) = (chat.Socket("alice"), chat.Socket("bob"));

        await _time.AdvanceInStepsAsync(TimeSpan.FromSeconds(3));
        await alicePhone.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });
        await alicePhone.PingAsync();
        await _time.AdvanceInStepsAsync(TimeSpan.FromSeconds(3.5));

        // 6.5 s after it started, 3.5 s after the refresh: still typing.
        await bobPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence, p => !p.GetProperty("is_typing").GetBoolean());

        await _time.AdvanceInStepsAsync(TimeSpan.FromSeconds(3));
        AssertTyping(
            await bobPhone.NextAsync("typing", p => !p.GetProperty("is_typing").GetBoolean()), conversation.Id, "alice", isTyping: false);
    }

    [Fact]
    public async Task Typing_TyperSendsAMessage_OthersGetIsTypingFalse()
    {
        await using var chat = await AliceTypingToBobAsync();
        var (alice, conversation) = (chat.Api("alice"), chat.Conversation);
        var bobPhone = chat.Socket("bob");

        var sent = await alice.SendTextAsync(conversation.Id, "done typing");

        Assert.Equal(sent.Id, (await bobPhone.NextAsync("new_message")).GetProperty("message").GetProperty("id").GetGuid());
        AssertTyping(await bobPhone.NextAsync("typing"), conversation.Id, "alice", isTyping: false);
    }

    [Theory]
    [InlineData("alice")] // removed by the owner
    [InlineData("bob")] // left
    public async Task Typing_TyperRemovedOrLeaves_OthersGetIsTypingFalseAtOnce(string remover)
    {
        // Fake time that is never advanced: the false cannot be the expiry's.
        await using var chat = await _factory.GroupChat("leaving", "alice", "bob", "carol").Connect("bob").Connect("carol").OpenAsync();
        var conversation = chat.Conversation;
        var (bobPhone, carolPhone) = (chat.Socket("bob"), chat.Socket("carol"));
        await bobPhone.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });
        AssertTyping(await carolPhone.NextAsync("typing"), conversation.Id, "bob", isTyping: true);

        Assert.Equal(HttpStatusCode.NoContent, (await chat.Api(remover).DeleteAsync($"/api/v1/conversations/{conversation.Id}/participants/bob")).StatusCode);

        await carolPhone.NextAsync("participant_removed");
        AssertTyping(await carolPhone.NextAsync("typing"), conversation.Id, "bob", isTyping: false);
    }

    [Fact]
    public async Task Typing_AnotherMemberSendsAMessage_TypersIndicatorStaysOn()
    {
        await using var chat = await _factory.GroupChat("two typists", "alice", "bob", "carol").Connect("alice").Connect("carol").OpenAsync();
        var (bob, conversation) = (chat.Api("bob"), chat.Conversation);
        var (alicePhone, carolPhone) = (chat.Socket("alice"), chat.Socket("carol"));
        await alicePhone.SendAsync("typing", new { conversation_id = conversation.Id, is_typing = true });
        AssertTyping(await carolPhone.NextAsync("typing"), conversation.Id, "alice", isTyping: true);

        await bob.SendTextAsync(conversation.Id, "not alice");

        await carolPhone.NextAsync("new_message");
        await carolPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Typing_OverSocketByUserOutsideTheConversation_ErrorNotFoundAndNoEvent()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("bob").Connect("mallory").OpenAsync();
        var conversation = chat.Conversation;
        var (bobPhone, mallory) = (chat.Socket("bob"), chat.Socket("mallory"));

        await mallory.SendAsync("""{"type":"typing","id":"ty-1","payload":{"conversation_id":"CID","is_typing":true}}""".Replace("CID", conversation.Id.ToString(), StringComparison.Ordinal));

        await mallory.NextErrorAsync("not_found", id: "ty-1");
        await bobPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Typing_OverRestByUserOutsideTheConversation_Returns404AndNoEvent()
    {
        await using var chat = await _factory.DirectChat("alice", "bob").Connect("bob").OpenAsync();
        var (mallory, conversation) = (chat.Api("mallory"), chat.Conversation);
        var bobPhone = chat.Socket("bob");

        var response = await mallory.PostAsync($"/api/v1/conversations/{conversation.Id}/typing", new { is_typing = true });

        await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
        await bobPhone.AssertNoFrameAsync("typing", WsClientAssertions.Silence);
    }

    [Fact]
    public async Task Typing_UnknownConversation_ErrorNotFound()
    {
        await using var alicePhone = await WsClient.ConnectAsync(_factory, "alice");

        await alicePhone.SendAsync("""{"type":"typing","id":"ty-2","payload":{"conversation_id":"CID","is_typing":true}}""".Replace("CID", Guid.CreateVersion7().ToString(), StringComparison.Ordinal));

        await alicePhone.NextErrorAsync("not_found", id: "ty-2");
    }

    [Fact]
    public async Task Typing_StartedAgainWhileItsExpiryReadsTheMembers_EndsUpOn()
    {
        // The expiry took the indicator out, read the members, then said "false": a "true" sent in between (broadcast,
        // as a new start) was followed by that "false", and the typer showed as not typing while the server held it.
        // Now the start waits for the expiry: its "false" goes first, then the new start's "true".
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(time: time, services: FailingStore.Install).StartKestrel();
        var store = factory.Services.GetRequiredService<FailingStore>();
        await using var chat = await factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        var (alice, bob) = (chat.Socket("alice"), chat.Socket("bob"));
        await alice.SendAsync("typing", new { conversation_id = chat.Id, is_typing = true });
        Assert.True((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());

        store.Method = nameof(Parley.Server.Storage.IChatStore.GetConversationAsync);
        store.Delay = TimeSpan.FromSeconds(3);
        store.Failing = true;
        await time.AdvanceInStepsAsync(TypingTimeout + TimeSpan.FromSeconds(1.5));
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.Failures == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the expiry did not read the members");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        store.Failing = false;
        await alice.SendAsync("typing", new { conversation_id = chat.Id, is_typing = true });

        Assert.False((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        Assert.True((await bob.NextAsync("typing")).GetProperty("is_typing").GetBoolean());
        await bob.AssertNoFrameAsync("typing", TimeSpan.FromSeconds(4));
    }

    /// <summary>Alice and Bob in a direct conversation, one socket each; Alice is typing, as Bob's socket was told.</summary>
    private async Task<ChatScene> AliceTypingToBobAsync()
    {
        var chat = await _factory.DirectChat("alice", "bob").Connect("alice").Connect("bob").OpenAsync();
        try
        {
            await chat.Socket("alice").SendAsync("typing", new { conversation_id = chat.Id, is_typing = true });
            AssertTyping(await chat.Socket("bob").NextAsync("typing"), chat.Id, "alice", isTyping: true);
            return chat;
        }
        catch (Exception)
        {
            await chat.DisposeAsync();
            throw;
        }
    }

    private void AssertTyping(JsonElement payload, Guid conversationId, string userId, bool isTyping)
    {
        Assert.Equal(conversationId, payload.GetProperty("conversation_id").GetGuid());
        Assert.Equal(userId, payload.GetProperty("user_id").GetString());
        Assert.Equal(isTyping, payload.GetProperty("is_typing").GetBoolean());
        // Server time (fake here) at the moment of the change, not a default or a client value.
        Assert.InRange(payload.GetProperty("timestamp").GetDateTimeOffset(), _time.GetUtcNow() - TimeSpan.FromSeconds(15), _time.GetUtcNow());
    }
}

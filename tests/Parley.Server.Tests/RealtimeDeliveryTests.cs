using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

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
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var alicePhone = await WsClient.ConnectAsync(_factory, "alice", deviceId: "phone");
        await using var aliceLaptop = await WsClient.ConnectAsync(_factory, "alice", deviceId: "laptop");
        await using var bobPhone = await WsClient.ConnectAsync(_factory, "bob", deviceId: "phone");

        var sent = await alice.SendTextAsync(conversation.Id, "hello");

        foreach (var device in new[] { alicePhone, aliceLaptop, bobPhone })
        {
            var payload = await device.NextAsync("new_message");
            Assert.Equal(sent.Id, payload.GetProperty("message").GetProperty("id").GetGuid());
            Assert.Equal("hello", payload.GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(sent.Seq, payload.GetProperty("message").GetProperty("seq").GetInt64());
        }
    }
}

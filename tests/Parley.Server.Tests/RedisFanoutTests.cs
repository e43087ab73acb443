using Parley.Server.Fanout;
using Parley.Server.Tests.Infrastructure;
using StackExchange.Redis;

namespace Parley.Server.Tests;

/// <summary>What only the Redis fan-out does: its envelope, routes of instances that died, and a Redis restart.</summary>
[Trait("Store", "Independent")]
public sealed class RedisFanoutTests
{
    [Fact]
    public void Envelope_RoundTrip_KeepsEveryFieldAndTheBytes()
    {
        var conversation = Guid.CreateVersion7();
        var frame = new Realtime.OutboundFrame("{\"type\":\"x\"}"u8.ToArray(), "new_message", conversation, 7, 7, "alice ü");
        var hidden = new Realtime.OutboundFrame("{}"u8.ToArray(), "hidden_event", conversation, 7);
        var message = new FanoutMessage([new FanoutPart(["bob", "carol"], frame), new FanoutPart(["dave"], hidden)], "erin");

        Assert.True(FanoutEnvelope.TryDecode(FanoutEnvelope.Encode(message), out var decoded));

        Assert.Equal("erin", decoded!.ExceptUserId);
        Assert.Equal(2, decoded.Parts.Count);
        var first = decoded.Parts[0].Frame;
        Assert.Equal(["bob", "carol"], decoded.Parts[0].UserIds);
        Assert.Equal(("new_message", (Guid?)conversation, 7L, 7L, "alice ü", false), (first.Type, first.ConversationId, first.Seq, first.DeliverySeq, first.SenderId, first.Transient));
        Assert.Equal(frame.Utf8.ToArray(), first.Utf8.ToArray());
        Assert.Equal(["dave"], decoded.Parts[1].UserIds);
        Assert.Equal((conversation, 7L), (decoded.ConversationId, decoded.Seq));
    }

    [Fact]
    public void Envelope_UnknownVersionOrTruncated_IsRefusedNotGuessed()
    {
        var bytes = FanoutEnvelope.Encode(new FanoutMessage(["bob"], FanoutNode.Frame("x")));

        var otherVersion = (byte[])bytes.Clone();
        otherVersion[0] = 2;
        Assert.False(FanoutEnvelope.TryDecode(otherVersion, out _));
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.False(FanoutEnvelope.TryDecode(bytes.AsSpan(0, length), out _));
        }

        Assert.False(FanoutEnvelope.TryDecode([.. bytes, 0], out _));
    }

    [Fact]
    public async Task InstanceDiedWithoutDeregistering_ItsRoutesAreDroppedOnceItsLivenessExpires()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        var crashed = await FanoutNode.RedisAsync(redis.ConnectionString);
        await crashed.ConnectAsync("alice");
        var crashedId = crashed.Redis.InstanceId;
        await crashed.Redis.DisposeAsync(); // gone without StopAsync: its route and liveness key stay behind

        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        Assert.Contains((RedisValue)crashedId, await db.SetMembersAsync("parley:route:alice"));

        // Liveness (3 s in these nodes) runs out; the next publication for alice drops the dead route.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (await db.KeyExistsAsync("parley:instance:" + crashedId))
        {
            Assert.True(DateTime.UtcNow < deadline, "liveness key never expired");
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }

        await publisher.PublishAsync(["alice"], FanoutNode.Frame("to-the-dead"));
        deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await db.SetMembersAsync("parley:route:alice")).Contains(crashedId))
        {
            Assert.True(DateTime.UtcNow < deadline, "the dead route was not dropped");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task RedisRestartedWithoutItsData_InstancesRegisterTheirUsersAgainAndDeliveryResumes()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var publisher = await FanoutNode.RedisAsync(redis.ConnectionString);
        await using var receiver = await FanoutNode.RedisAsync(redis.ConnectionString);
        var alice = await receiver.ConnectAsync("alice");

        await redis.StopAsync();
        await redis.StartAgainAsync(); // empty: routes and liveness keys are gone

        var deadline = DateTime.UtcNow.AddSeconds(20);
        var sent = 0;
        while (alice.Socket.Sent.Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "delivery did not resume after the restart");
            await publisher.PublishAsync(["alice"], FanoutNode.Frame($"after-{sent++}"));
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
    }
}

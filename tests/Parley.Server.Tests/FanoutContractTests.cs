using Parley.Server.Fanout;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The fan-out seam's contract (docs/scaling.md, Fanout/README.md), run against each implementation. The publishing
/// instance and the receiving one are the same for the in-process fan-out and two instances on one Redis for the
/// Redis fan-out: what holds for one holds for the other.
/// </summary>
[Trait("Store", "Independent")]
public abstract class FanoutContractTests : IAsyncLifetime
{
    private FanoutNode? _publisher;
    private FanoutNode? _receiver;

    private protected FanoutNode Publisher => _publisher!;

    private protected FanoutNode Receiver => _receiver!;

    public async ValueTask InitializeAsync() => (_publisher, _receiver) = await CreateNodesAsync();

    public async ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        if (_receiver is not null && _receiver != _publisher)
        {
            await _receiver.DisposeAsync();
        }

        if (_publisher is not null)
        {
            await _publisher.DisposeAsync();
        }

        await DisposeTransportAsync();
    }

    private protected virtual Task DisposeTransportAsync() => Task.CompletedTask;

    private protected abstract Task<(FanoutNode Publisher, FanoutNode Receiver)> CreateNodesAsync();

    [Fact]
    public async Task Publish_ManyFrames_EveryDeviceOfEachListedUserGetsThemInPublishOrder()
    {
        var aliceOne = await Receiver.ConnectAsync("alice");
        var aliceTwo = await Receiver.ConnectAsync("alice");
        var bob = await Publisher.ConnectAsync("bob");
        var labels = Enumerable.Range(0, 300).Select(i => $"m{i}").ToList();

        foreach (var label in labels)
        {
            await Publisher.PublishAsync(["alice", "bob"], FanoutNode.Frame(label));
        }

        foreach (var device in new[] { aliceOne, aliceTwo, bob })
        {
            await device.WaitForAsync(labels.Count);
            Assert.Equal(labels, device.Labels);
        }
    }

    [Fact]
    public async Task Publish_UsersNotListedAndTheExceptedUser_GetNothing()
    {
        var alice = await Receiver.ConnectAsync("alice");
        var carol = await Receiver.ConnectAsync("carol");
        var typist = await Receiver.ConnectAsync("typist");

        await Publisher.PublishAsync(["alice", "typist"], FanoutNode.Frame("typing"), exceptUserId: "typist");
        await Publisher.PublishAsync(["carol", "typist"], FanoutNode.Frame("sentinel"));

        await alice.WaitForAsync(1);
        await carol.WaitForAsync(1);
        await typist.WaitForAsync(1);
        Assert.Equal(["typing"], alice.Labels);
        Assert.Equal(["sentinel"], carol.Labels); // the first frame carol got: nothing before it
        Assert.Equal(["sentinel"], typist.Labels);
    }

    [Fact]
    public async Task Publish_RecipientOnThePublishingInstance_GetsItsOwnInstancesFrames()
    {
        var local = await Publisher.ConnectAsync("alice");
        var remote = await Receiver.ConnectAsync("alice");

        await Publisher.PublishAsync(["alice"], FanoutNode.Frame("self"));

        await local.WaitForAsync(1);
        await remote.WaitForAsync(1);
        Assert.Equal(["self"], local.Labels);
        Assert.Equal(["self"], remote.Labels);
    }

    [Fact]
    public async Task Publish_LargeFrame_ArrivesIntact()
    {
        var alice = await Receiver.ConnectAsync("alice");
        var frame = FanoutNode.Frame("large", padding: 700_000);

        await Publisher.PublishAsync(["alice"], frame);

        await alice.WaitForAsync(1);
        Assert.Equal(System.Text.Encoding.UTF8.GetString(frame.Utf8.Span), Assert.Single(alice.Socket.Sent));
    }

    [Fact]
    public async Task Publish_OneDeviceStoppedReading_OthersGetEveryFrameAndThePublisherNeverWaits()
    {
        var stuck = await Receiver.ConnectAsync("alice", blocked: true);
        var healthy = await Receiver.ConnectAsync("bob");
        var labels = Enumerable.Range(0, 200).Select(i => $"m{i}").ToList();

        foreach (var label in labels)
        {
            var publish = Publisher.PublishAsync(["alice", "bob"], FanoutNode.Frame(label));
            Assert.True(publish.IsCompleted, "publishing waited");
            await publish;
        }

        await healthy.WaitForAsync(labels.Count);
        Assert.Equal(labels, healthy.Labels);
        Assert.Empty(stuck.Socket.Sent);
    }

    [Fact]
    public async Task Publish_AfterTheUsersLastDeviceLeft_ReachesNoOne()
    {
        var gone = await Receiver.ConnectAsync("alice");
        await gone.DisconnectAsync();
        var watcher = await Receiver.ConnectAsync("bob");

        await Publisher.PublishAsync(["alice"], FanoutNode.Frame("to-nobody"));
        await Publisher.PublishAsync(["bob"], FanoutNode.Frame("sentinel"));

        await watcher.WaitForAsync(1);
        Assert.Equal(["sentinel"], watcher.Labels);
        Assert.Empty(gone.Socket.Sent);
    }

    [Fact]
    public async Task Typing_StartedOnceRefreshedAnywhere_EndedOnceByWhoeverStopsIt()
    {
        var conversation = Guid.CreateVersion7();
        var timeout = TimeSpan.FromSeconds(30);

        Assert.True(await Publisher.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None));
        Assert.False(await Receiver.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None)); // a refresh
        Assert.False(await Publisher.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None));
        Assert.True(await Receiver.Fanout.StartTypingAsync(conversation, "bob", timeout, CancellationToken.None)); // another user
        Assert.True(await Receiver.Fanout.StartTypingAsync(Guid.CreateVersion7(), "alice", timeout, CancellationToken.None)); // elsewhere

        Assert.True(await Receiver.Fanout.StopTypingAsync(conversation, "alice", seenHere: true));
        Assert.False(await Publisher.Fanout.StopTypingAsync(conversation, "alice", seenHere: true));
        Assert.Equal(TypingCheck.Gone, await Publisher.Fanout.CheckTypingAsync(conversation, "alice"));
        Assert.True(await Publisher.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None)); // again
        Assert.Equal(TypingOutcome.Refreshed, (await Publisher.Fanout.CheckTypingAsync(conversation, "bob")).Outcome);
    }

    [Fact]
    public async Task Typing_CheckedAtTheEndOfItsTimeout_EndedForExactlyOneChecker_RefreshedIfRefreshedMeanwhile()
    {
        var conversation = Guid.CreateVersion7();
        var timeout = TimeSpan.FromMilliseconds(300);
        Assert.True(await Publisher.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None));
        await Task.Delay(TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken);
        Assert.False(await Receiver.Fanout.StartTypingAsync(conversation, "alice", timeout, CancellationToken.None));

        // The start's own timeout has passed; the refresh's has not.
        await Task.Delay(TimeSpan.FromMilliseconds(150), TestContext.Current.CancellationToken);
        var refreshed = await Publisher.Fanout.CheckTypingAsync(conversation, "alice");
        Assert.Equal(TypingOutcome.Refreshed, refreshed.Outcome);
        Assert.InRange(refreshed.Remaining, TimeSpan.FromMilliseconds(1), timeout);

        await Task.Delay(timeout, TestContext.Current.CancellationToken);
        var checks = new[] { await Publisher.Fanout.CheckTypingAsync(conversation, "alice"), await Receiver.Fanout.CheckTypingAsync(conversation, "alice") };
        Assert.Equal([TypingCheck.Ended, TypingCheck.Gone], checks);
        Assert.False(await Receiver.Fanout.StopTypingAsync(conversation, "alice", seenHere: true)); // its end was announced by the checker

        // Past its deadline but not yet checked, it has ended for everyone: starting again is a start.
        Assert.True(await Receiver.Fanout.StartTypingAsync(conversation, "bob", timeout, CancellationToken.None));
        await Task.Delay(timeout + TimeSpan.FromMilliseconds(50), TestContext.Current.CancellationToken);
        Assert.True(await Publisher.Fanout.StartTypingAsync(conversation, "bob", timeout, CancellationToken.None));
    }
}

[Trait("Store", "Independent")]
public sealed class InProcessFanoutContractTests : FanoutContractTests
{
    private protected override Task<(FanoutNode Publisher, FanoutNode Receiver)> CreateNodesAsync()
    {
        var node = FanoutNode.InProcess();
        return Task.FromResult((node, node));
    }
}

[Trait("Store", "Independent")]
public sealed class RedisFanoutContractTests : FanoutContractTests
{
    private RedisServer? _redis;

    private protected override async Task<(FanoutNode Publisher, FanoutNode Receiver)> CreateNodesAsync()
    {
        _redis = await RedisServer.StartAsync();
        return (await FanoutNode.RedisAsync(_redis.ConnectionString), await FanoutNode.RedisAsync(_redis.ConnectionString));
    }

    private protected override async Task DisposeTransportAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}

using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Realtime;
using Parley.Server.Sync;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The cursor check's repair: events a socket lacks are sent again, but not while they may still be queued or being written
/// (a repair then wrote the same seq twice on one socket).
/// </summary>
public sealed class CursorRepairTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CursorCheck_EventsLackingWhileFramesWaitInTheSendQueue_AreSentAgainOnlyOnceItIsEmpty()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new ParleyFactory(time: time);
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateGroupAsync("trip", "bob");
        await alice.SendTextAsync(conversation.Id, "one");
        var advancer = factory.Services.GetRequiredService<CursorAdvancer>();

        // A socket of bob's that was written nothing: every event of his after position 0 is one it lacks.
        async Task<int> RepairedAsync(bool framesWaiting, bool frameBeingWritten = false)
        {
            using var socket = new FakeWebSocket();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            using var connection = new Connection(
                Guid.NewGuid().ToString("N"), "bob", "phone", acks: true, socket, new RealtimeOptions { SendQueueCapacity = 64 }, 1 << 20,
                NullLogger.Instance, TestMetrics.Unobserved);
            var delivery = new SocketDelivery(connection, 64);
            delivery.Cursors.Enabled = true;
            if (framesWaiting)
            {
                // A slow reader: a frame still in the send queue (the connection's send loop is not running).
                Assert.True(connection.TryEnqueue(new OutboundFrame("{\"type\":\"test\"}"u8.ToArray(), "test")));
            }

            Task? run = null;
            if (frameBeingWritten)
            {
                // A slow reader: the send loop took the last frame off the queue and is still writing it.
                socket.BlockSends();
                run = connection.RunAsync((_, _, _, _) => Task.CompletedTask, (_, _) => { }, stop.Token);
                Assert.True(connection.TryEnqueue(new OutboundFrame("{\"type\":\"test\"}"u8.ToArray(), "test")));
                await socket.SendBlocked.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            }

            var before = connection.QueueLength;
            delivery.Cursors.SentSinceCursor = true;
            await advancer.TryAdvanceAsync(delivery, Ct);
            time.Advance(TimeSpan.FromSeconds(3)); // lacking for longer than the repair waits
            await advancer.TryAdvanceAsync(delivery, Ct);
            var repaired = connection.QueueLength - before;
            if (run is not null)
            {
                await stop.CancelAsync();
                socket.ReleaseSends();
                await run.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            return repaired;
        }

        Assert.Equal(0, await RepairedAsync(framesWaiting: true));
        Assert.Equal(0, await RepairedAsync(framesWaiting: false, frameBeingWritten: true));
        Assert.True(await RepairedAsync(framesWaiting: false) > 0, "a socket with an empty queue gets what it lacks");
    }
}

using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Parley.Server.Fanout;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Receipts;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The delivered-receipt tracker's loop: a receipt that fails to go out is logged, and the tracker goes on.</summary>
public sealed class DeliveryTrackerTests
{
    [Fact]
    public async Task ReceiptBroadcastFailingUnexpectedly_IsLoggedAsAnError_LaterReceiptsStillReachTheSender()
    {
        var log = new LogCapture();
        FailingFanout? fanout = null;
        await using var factory = new ParleyFactory(services: services =>
        {
            services.AddSingleton<IFanout>(sp => fanout = new FailingFanout(sp.GetRequiredService<InProcessFanout>()));
            services.AddSingleton<ILoggerProvider>(log);
        }).StartKestrel();
        using var aliceRest = factory.Api("alice");
        var conversation = await aliceRest.CreateDirectAsync("bob");
        await using var alice = await WsClient.ConnectAsync(factory, "alice");
        await using var bob = await WsClient.ConnectAsync(factory, "bob"); // no acks: a frame on the socket counts as delivered

        // Publishing the first delivered receipt fails with something no fan-out is expected to throw (a bug, say).
        fanout!.Failing = true;
        var first = await aliceRest.SendTextAsync(conversation.Id, "first");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == first.Id);
        var failed = await log.WaitForAsync(e => e.EventId.Id == 4002, TimeSpan.FromSeconds(10));
        Assert.Equal(LogLevel.Error, failed.Level);
        Assert.Contains("not a network error", failed.Everything, StringComparison.Ordinal);
        fanout.Failing = false;

        // The tracker goes on: the next receipt reaches the sender's socket, and the server still serves.
        var second = await aliceRest.SendTextAsync(conversation.Id, "second");
        await bob.NextAsync("new_message", p => p.GetProperty("message").GetProperty("id").GetGuid() == second.Id);
        await alice.NextAsync("message_delivered", p => p.GetProperty("up_to_seq").GetInt64() >= second.Seq);
    }

    [Fact]
    public async Task Stopping_WhileABatchWaitsForTheWriteQueue_TheLastFlushWritesIt()
    {
        // The loop took the reports out, waited for a place in the write queue, and was cancelled by the shutdown: the
        // batch was lost with the loop, and StopAsync's flush found nothing.
        var store = DispatchProxy.Create<IChatStore, QueueFullUntilStopped>();
        var written = ((QueueFullUntilStopped)(object)store).Written;
        using var tracker = new DeliveryTracker(
            store, null!, TimeProvider.System, Options.Create(new RealtimeOptions { DeliveryFlushInterval = TimeSpan.FromMilliseconds(10) }),
            NullLogger<DeliveryTracker>.Instance);
        await tracker.StartAsync(TestContext.Current.CancellationToken);
        var conversation = Guid.NewGuid();

        tracker.Report(conversation, "bob", 7);
        await ((QueueFullUntilStopped)(object)store).Waiting.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        await tracker.StopAsync(TestContext.Current.CancellationToken);

        Assert.Equal([new DeliveryReport(conversation, "bob", 7)], written);
    }

    /// <summary>A store whose first delivered batch waits (a full write queue) until it is cancelled; later ones are written.</summary>
#pragma warning disable CA1852 // DispatchProxy derives from it
    internal class QueueFullUntilStopped : DispatchProxy
#pragma warning restore CA1852
    {
        private int _calls;

        public TaskCompletionSource Waiting { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        internal List<DeliveryReport> Written { get; } = [];

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            Assert.Equal(nameof(IChatStore.AdvanceDeliveredAsync), targetMethod!.Name);
            var batch = (IReadOnlyList<DeliveryReport>)args![0]!;
            var token = (CancellationToken)args[2]!;
            if (Interlocked.Increment(ref _calls) == 1)
            {
                return WaitForStopAsync(token);
            }

            Written.AddRange(batch);
            return Task.FromResult(new DeliveredBatch([]));
        }

        private async Task<DeliveredBatch> WaitForStopAsync(CancellationToken token)
        {
            Waiting.TrySetResult();
            await Task.Delay(Timeout.Infinite, token);
            throw new InvalidOperationException("not reached");
        }
    }

    /// <summary>The in-process fan-out, except that publishing a <c>message_delivered</c> frame throws while <see cref="Failing"/> is set.</summary>
    private sealed class FailingFanout(InProcessFanout inner) : IFanout
    {
        public volatile bool Failing;

        public ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken) =>
            Failing && message.Parts.Any(p => p.Frame.Type == FrameTypes.MessageDelivered)
                ? throw new NotSupportedException("not a network error")
                : inner.PublishAsync(message, cancellationToken);

        public ValueTask<Subscription> SubscribeAsync(string userId, CancellationToken cancellationToken) => inner.SubscribeAsync(userId, cancellationToken);

        public ValueTask<bool> UnsubscribeAsync(string userId) => inner.UnsubscribeAsync(userId);

        public ValueTask<IReadOnlyDictionary<string, UserPresence>> GetPresenceAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken) =>
            inner.GetPresenceAsync(userIds, cancellationToken);

        public ValueTask<bool> StartTypingAsync(Guid conversationId, string userId, TimeSpan timeout, CancellationToken cancellationToken) =>
            inner.StartTypingAsync(conversationId, userId, timeout, cancellationToken);

        public ValueTask<bool> StopTypingAsync(Guid conversationId, string userId, bool seenHere) => inner.StopTypingAsync(conversationId, userId, seenHere);

        public ValueTask<TypingCheck> CheckTypingAsync(Guid conversationId, string userId) => inner.CheckTypingAsync(conversationId, userId);
    }
}

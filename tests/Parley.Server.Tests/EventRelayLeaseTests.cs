using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Events;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The lease beside a relay pass: renewed while a slow pass reads, builds and publishes, and a pass whose renewal fails
/// is abandoned, never left running.
/// </summary>
public sealed class EventRelayLeaseTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A server whose store can be made to fail or slow down, publishing to <paramref name="sink"/>, with a lease renewed every 0.5 s.</summary>
    private static ParleyFactory Server(IEventSink sink) => new(
        settings =>
        {
            settings["Events:PollInterval"] = "00:00:00.020";
            settings["Events:LeaseDuration"] = "00:00:01.500";
        },
        services: services =>
        {
            FailingStore.Install(services);
            services.AddSingleton<IEventSink>(sink);
        });

    [Fact]
    public async Task Publish_LeaseRenewalFailing_TheSlowPublishIsAbandonedBeforeTheBatchGoesAgain()
    {
        var sink = new SlowFirstSink();
        await using var factory = Server(sink);
        var store = await StartSlowPublishAsync(factory, sink);

        // The renewal beside the slow publish fails (the store away for a moment, not the lease lost).
        store.Method = nameof(IChatStore.TakeRelayLeaseAsync);
        store.Failing = true;
        await sink.FirstEnded.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        store.Failing = false;

        // The next pass publishes the batch again, and never beside the first (two publishes of one sink would reorder).
        await sink.SecondDone.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        Assert.True(sink.FirstCancelled);
        Assert.Equal(1, sink.MostAtOnce);
    }

    [Fact]
    public async Task Publish_LeaseRenewalHanging_TheSlowPublishIsAbandonedBeforeTheLeaseRunsOut()
    {
        var sink = new SlowFirstSink();
        await using var factory = Server(sink);
        var store = await StartSlowPublishAsync(factory, sink);

        // The renewal beside the slow publish does not answer for longer than the lease (1.5 s) lasts: a database that
        // hangs, or a single writer busy elsewhere. Another instance may take the sink over once the lease ran out.
        store.Method = nameof(IChatStore.TakeRelayLeaseAsync);
        store.Delay = TimeSpan.FromSeconds(6);
        store.Failing = true;
        var renewalHangs = System.Diagnostics.Stopwatch.StartNew();

        await sink.FirstEnded.WaitAsync(TimeSpan.FromSeconds(20), Ct);

        // Abandoned before the lease ran out (at most 1.5 s after its last renewal), not when the renewal came back.
        Assert.True(renewalHangs.Elapsed < TimeSpan.FromSeconds(5), $"the publish ran on for {renewalHangs.Elapsed}");
        Assert.True(sink.FirstCancelled);
        store.Failing = false;
    }

    [Fact]
    public async Task Pass_ReadingSlowerThanTheLeaseLasts_TheLeaseIsRenewedBesideTheRead()
    {
        var sink = new InMemoryEventSink();
        var (factory, store, alice) = await PublishingAsync(sink);
        await using var server = factory;
        using var client = alice;

        // The next read of the outbox takes twice the lease (a large batch on a busy database).
        store.Method = nameof(IChatStore.ReadOutboxAsync);
        store.Delay = TimeSpan.FromSeconds(3);
        store.Failing = true;
        for (var i = 0; i < 200 && store.Failures == 0; i++)
        {
            await Task.Delay(10, Ct);
        }

        Assert.True(store.Failures > 0);
        await Task.Delay(TimeSpan.FromSeconds(2.2), Ct);

        // Another instance cannot take the sink over meanwhile (it would publish the same batch beside this one).
        var taken = await store.Store.TakeRelayLeaseAsync(sink.Name, "another instance", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(1.5), Ct);
        store.Failing = false;
        Assert.Null(taken);
    }

    [Fact]
    public async Task Lease_TakenTooLateForTheFirstRenewal_NothingPublishedUntilItIsTakenInTime()
    {
        // A take that answered after a third of the lease left the pass to publish with less lease than its first renewal
        // needs: another instance could take the sink over and publish the same batch beside it.
        var sink = new InMemoryEventSink();
        var (factory, store, alice) = await PublishingAsync(sink);
        await using var server = factory;
        using var client = alice;

        // Every take of the lease now answers 0.9 s late: the pass's first renewal, 0.5 s after it starts, would be due
        // after 1.2 s of the 1.5 s lease (a fifth is kept to spare).
        store.Method = nameof(IChatStore.TakeRelayLeaseAsync);
        store.Delay = TimeSpan.FromSeconds(0.9);
        store.Failing = true;
        await Task.Delay(TimeSpan.FromSeconds(1.2), Ct);
        var before = sink.Records.Count;
        await alice.CreateDirectAsync("carol");
        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        Assert.Equal(before, sink.Records.Count);
        using (var http = factory.CreateClient())
        {
            Assert.Contains("Events:LeaseDuration", await http.GetStringAsync("/ready", Ct), StringComparison.Ordinal);
        }

        store.Failing = false;
        await sink.WaitForAsync(r => r.Count > before);
    }

    [Fact]
    public async Task Lease_TakenOverAfterAFailure_ThisInstanceNoLongerReportsTheFailure()
    {
        // The failure of its last pass stayed on an instance that lost the lease: its /ready said "publishing fails" for
        // good while another instance published.
        var sink = new InMemoryEventSink();
        var (factory, store, alice) = await PublishingAsync(sink);
        await using var server = factory;
        using var client = alice;

        store.Method = nameof(IChatStore.TakeRelayLeaseAsync);
        store.Failing = true;
        await WaitForEventsCheckAsync(factory, check => check.Contains("publishing fails", StringComparison.Ordinal));

        // Once its lease ran out, another instance takes the sink (for long); then the store answers this one again.
        RelayLease? taken = null;
        for (var i = 0; i < 100 && taken is null; i++)
        {
            await Task.Delay(50, Ct);
            taken = await store.Inner.TakeRelayLeaseAsync(sink.Name, "another instance", DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5), Ct);
        }

        Assert.NotNull(taken);
        store.Failing = false;
        await WaitForEventsCheckAsync(factory, check => !check.Contains("publishing fails", StringComparison.Ordinal));
    }

    private static async Task WaitForEventsCheckAsync(ParleyFactory factory, Func<string, bool> done)
    {
        using var client = factory.CreateClient();
        var body = "";
        for (var i = 0; i < 400; i++)
        {
            body = await client.GetStringAsync("/ready", Ct);
            using var report = System.Text.Json.JsonDocument.Parse(body);
            if (done(report.RootElement.GetProperty("checks").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "events").ToString()))
            {
                return;
            }

            await Task.Delay(50, Ct);
        }

        Assert.Fail($"/ready never reported what was expected; last: {body}");
    }

    /// <summary>A server publishing to <paramref name="sink"/>, its store, and alice, whose first conversation was published.</summary>
    private static async Task<(ParleyFactory Factory, FailingStore Store, ParleyApi Alice)> PublishingAsync(InMemoryEventSink sink)
    {
        var factory = Server(sink);
        var alice = factory.Api("alice");
        await alice.CreateDirectAsync("bob");
        await sink.WaitForAsync(r => r.Count >= 1);
        return (factory, factory.Services.GetRequiredService<FailingStore>(), alice);
    }

    /// <summary>A conversation created, so that the first publish starts (and hangs); the store to slow or fail then.</summary>
    private static async Task<FailingStore> StartSlowPublishAsync(ParleyFactory factory, SlowFirstSink sink)
    {
        using var alice = factory.Api("alice");
        await alice.CreateDirectAsync("bob");
        await sink.FirstStarted.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        return factory.Services.GetRequiredService<FailingStore>();
    }

    /// <summary>The first publish hangs until cancelled; later ones complete at once.</summary>
    private sealed class SlowFirstSink : IEventSink
    {
        private readonly TaskCompletionSource _firstStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _firstEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _secondDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;
        private int _active;
        private int _mostAtOnce;

        public string Name => "slow";

        public Task FirstStarted => _firstStarted.Task;

        public Task FirstEnded => _firstEnded.Task;

        public Task SecondDone => _secondDone.Task;

        public bool FirstCancelled { get; private set; }

        public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

        public async Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
        {
            var call = Interlocked.Increment(ref _calls);
            var active = Interlocked.Increment(ref _active);
            int most;
            while ((most = Volatile.Read(ref _mostAtOnce)) < active && Interlocked.CompareExchange(ref _mostAtOnce, active, most) != most)
            {
            }

            try
            {
                if (call == 1)
                {
                    _firstStarted.TrySetResult();
                    try
                    {
                        await Task.Delay(Timeout.Infinite, cancellationToken);
                    }
                    catch (OperationCanceledException)
                    {
                        FirstCancelled = true;
                        throw;
                    }
                }
                else
                {
                    _secondDone.TrySetResult();
                }
            }
            finally
            {
                Interlocked.Decrement(ref _active);
                if (call == 1)
                {
                    _firstEnded.TrySetResult();
                }
            }
        }
    }
}

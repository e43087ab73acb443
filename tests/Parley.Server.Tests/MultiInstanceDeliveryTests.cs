using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Two instances on one PostgreSQL database without cross-instance fan-out: a socket on one instance misses
/// live events written through the other. Its cursors must never claim such an event, and the cursor check
/// sends it to the socket, so the device has it and its cursor moves on.
/// </summary>
[Trait("Store", "Independent")]
public sealed class MultiInstanceDeliveryTests : IAsyncLifetime
{
    // The first instance's delivery logs (cursor checks at Debug), shown when a wait for a cursor fails.
    private readonly LogCapture _firstLog = new();
    private TwoInstances? _instances;
    private ParleyFactory? _first;
    private ParleyFactory? _second;

    public ValueTask InitializeAsync()
    {
        _instances = new TwoInstances(
            (instance, s) =>
            {
                s["Delivery:CursorInterval"] = "00:00:00.200";
                if (instance == 0)
                {
                    s["Realtime:SendQueueCapacity"] = "16";
                    s["Logging:LogLevel:Parley.Server.Sync"] = "Debug";
                }
            },
            kestrel: true,
            services: (instance, services) =>
            {
                if (instance == 0)
                {
                    services.AddSingleton<ILoggerProvider>(_firstLog);
                }
            });
        (_first, _second) = (_instances.First, _instances.Second);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _instances?.DisposeAsync() ?? ValueTask.CompletedTask;

    [Fact]
    public async Task EventWrittenOnAnotherInstance_NoCursorClaimsItBeforeTheSocketGetsIt_ThenItIsSent()
    {
        using var aliceOnFirst = _first!.Api("alice");
        using var aliceOnSecond = _second!.Api("alice");
        using var bobRest = _first.Api("bob");
        var conversation = await aliceOnFirst.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_first, "bob", "acks=true");
        await bob.PingAsync(); // a first frame that is not a resume: cursors may follow

        var missed = await aliceOnSecond.SendTextAsync(conversation.Id, "through the other instance");
        var live = await aliceOnFirst.SendTextAsync(conversation.Id, "through this instance");
        await bob.NextAsync("new_message", p => Seq(p) == live.Seq);
        await bob.NextAsync("new_message", p => Seq(p) == missed.Seq, TimeSpan.FromSeconds(15));
        var frames = bob.All().ToList();
        var arrived = frames.FindIndex(f => Type(f) == "new_message" && Seq(f.GetProperty("payload")) == missed.Seq);

        // Every cursor the socket was given before it had the missed event still leads to it.
        foreach (var cursor in frames.Take(arrived).Where(f => Type(f) == "cursor"))
        {
            Assert.Contains(missed.Seq, await SyncedSeqsAsync(bobRest, cursor));
        }

        // Once it has it, the next cursor moves past both messages.
        var after = await FirstCursorAfterAsync(bob, arrived, _firstLog);
        var rest = await SyncedSeqsAsync(bobRest, after);
        Assert.DoesNotContain(missed.Seq, rest);
        Assert.DoesNotContain(live.Seq, rest);
    }

    [Fact]
    public async Task ManyEventsWrittenOnAnotherInstance_SentInBatchesThatFitTheQueue_TheSocketStaysOpen()
    {
        using var aliceOnFirst = _first!.Api("alice");
        using var aliceOnSecond = _second!.Api("alice");
        var conversation = await aliceOnFirst.CreateDirectAsync("bob");
        await using var bob = await WsClient.ConnectAsync(_first, "bob", "acks=true");

        // Forty messages bob's socket (a queue of 16) never got live, then one it did.
        var missed = new List<long>();
        for (var i = 0; i < 40; i++)
        {
            missed.Add((await aliceOnSecond.SendTextAsync(conversation.Id, $"elsewhere {i}")).Seq);
        }

        var live = await aliceOnFirst.SendTextAsync(conversation.Id, "here");
        await bob.NextAsync("new_message", p => Seq(p) == live.Seq);
        foreach (var seq in missed)
        {
            await bob.NextAsync("new_message", p => Seq(p) == seq, TimeSpan.FromSeconds(20));
        }

        Assert.False(bob.Closed.IsCompleted, "the socket was closed");
    }

    private static async Task<JsonElement> FirstCursorAfterAsync(WsClient client, int index, LogCapture log)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var cursor = client.All().Skip(index + 1).FirstOrDefault(f => Type(f) == "cursor");
            if (cursor.ValueKind != JsonValueKind.Undefined)
            {
                return cursor;
            }

            if (DateTime.UtcNow >= deadline)
            {
                var after = string.Join(", ", client.All().Skip(index + 1).Select(Type));
                var logs = string.Join("\n", log.Entries.Where(e => e.Level >= LogLevel.Warning || e.Category.StartsWith("Parley.Server.Sync", StringComparison.Ordinal))
                    .TakeLast(30).Select(e => $"{e.Level} {e.Category} {e.EventId.Id}: {e.Everything}"));
                Assert.Fail($"no cursor in 20 s after the missed event arrived; socket closed: {client.Closed.IsCompleted}; frames after it: [{after}]; logs:\n{logs}");
            }

            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    private static string Type(JsonElement frame) => frame.GetProperty("type").GetString()!;

    private static long Seq(JsonElement newMessagePayload) => newMessagePayload.GetProperty("message").GetProperty("seq").GetInt64();

    private static async Task<List<long>> SyncedSeqsAsync(ParleyApi api, JsonElement cursorFrame)
    {
        var cursor = cursorFrame.GetProperty("payload").GetProperty("cursor").GetString()!;
        var page = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(cursor)}&limit=1000"));
        return page.GetProperty("events").EnumerateArray().Where(e => Type(e) == "new_message").Select(e => Seq(e.GetProperty("payload"))).ToList();
    }
}

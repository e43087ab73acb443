using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The stream sequencer's loop: a pass that fails for any reason is retried, and never stops the server.</summary>
public sealed class StreamSequencerTests
{
    [Fact]
    public async Task PassFailingUnexpectedly_IsLoggedAsAnErrorAndRetried_TheServerKeepsServing()
    {
        var log = new LogCapture();
        await using var factory = new ParleyFactory(services: services =>
        {
            FailingStore.Install(services);
            services.AddSingleton<ILoggerProvider>(log);
        });
        var store = factory.Services.GetRequiredService<FailingStore>();
        using var alice = factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        var before = (await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;

        // A failure the sequencer does not expect (a bug, say), on every pass for a while.
        store.Method = nameof(IChatStore.AssignPositionsAsync);
        store.Error = () => new NotSupportedException("not a storage error");
        store.Failing = true;
        var message = await alice.SendTextAsync(conversation.Id, "sent while the sequencer fails");
        var failed = await log.WaitForAsync(e => e.EventId.Id == 6103, TimeSpan.FromSeconds(10));
        Assert.Equal(LogLevel.Error, failed.Level);
        Assert.Contains("not a storage error", failed.Everything, StringComparison.Ordinal);
        store.Failing = false;

        // The next passes position the message: a sync from before it returns it, so the server kept serving.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(before)}"));
            if (page.GetProperty("events").EnumerateArray().Any(e =>
                    e.GetProperty("type").GetString() == "new_message"
                    && e.GetProperty("payload").GetProperty("message").GetProperty("id").GetGuid() == message.Id))
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "the message was not positioned within 10 s after the failures ended");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }
}

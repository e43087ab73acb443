using System.Net;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The 48-hour edit window, on a fake clock.</summary>
public sealed class EditWindowTests : IAsyncLifetime
{
    private static readonly TimeSpan Window = TimeSpan.FromHours(48);
    private static readonly TimeSpan TokenLifetime = TimeSpan.FromDays(7);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public EditWindowTests() => _factory = new ParleyFactory(time: _time);

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Edit_JustInsideTheWindow_Returns200()
    {
        using var alice = _factory.LongLivedApi("alice", TokenLifetime);
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");

        _time.Advance(Window - TimeSpan.FromSeconds(1));
        var edited = await alice.EditAsync(sent.Id, "v2");

        Assert.Equal("v2", edited.Content);
        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds(), edited.EditedAt!.Value.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task Edit_PastTheWindow_Returns403EditWindowExpired()
    {
        using var alice = _factory.LongLivedApi("alice", TokenLifetime);
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");

        _time.Advance(Window + TimeSpan.FromSeconds(1));

        await ParleyApi.ProblemAsync(await alice.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "too late" }), HttpStatusCode.Forbidden, "edit_window_expired");
        var kept = await alice.GetMessageAsync(sent.Id);
        Assert.Equal("v1", kept.Content);
        Assert.Null(kept.EditedAt);
    }

    [Fact]
    public async Task Edit_WindowCountsFromCreationNotFromTheLastEdit()
    {
        using var alice = _factory.LongLivedApi("alice", TokenLifetime);
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "v1");

        _time.Advance(TimeSpan.FromHours(47));
        await alice.EditAsync(sent.Id, "v2");
        _time.Advance(TimeSpan.FromHours(2));

        await ParleyApi.ProblemAsync(await alice.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "v3" }), HttpStatusCode.Forbidden, "edit_window_expired");
    }

    [Fact]
    public async Task Delete_PastTheEditWindow_IsStillAllowed()
    {
        using var alice = _factory.LongLivedApi("alice", TokenLifetime);
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "old");

        _time.Advance(TimeSpan.FromDays(3));
        var tombstone = await alice.DeleteMessageAsync(sent.Id);

        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds(), tombstone.DeletedAt!.Value.ToUnixTimeMilliseconds());
    }
}

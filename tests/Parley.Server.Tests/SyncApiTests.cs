using System.Net;
using System.Text.Json;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>GET /api/v1/sync: the same events as the socket's catch-up, paged by stream position.</summary>
public sealed class SyncApiTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Sync_PagesThroughEveryEventOnceInOrderAcrossConversations()
    {
        using var alice = _factory.Api("alice");
        using var bob = _factory.Api("bob");
        var cursor = await CursorAsync(bob);
        var direct = await alice.CreateDirectAsync("bob");
        var group = await alice.CreateGroupAsync("g", "bob");
        var expected = new List<(Guid, long)> { (direct.Id, 1), (group.Id, 1) };
        for (var i = 0; i < 7; i++)
        {
            var target = i % 2 == 0 ? direct.Id : group.Id;
            expected.Add((target, (await alice.SendTextAsync(target, $"m{i}")).Seq));
        }

        var seen = await ReadAllAsync(bob, cursor, limit: 3, expectedEvents: expected.Count);

        Assert.Equal(expected.OrderBy(e => e.Item1).ThenBy(e => e.Item2), seen.OrderBy(e => e.Item1).ThenBy(e => e.Item2));
        foreach (var conversation in new[] { direct.Id, group.Id })
        {
            var seqs = seen.Where(e => e.Conversation == conversation).Select(e => e.Seq).ToList();
            Assert.Equal(seqs.Order(), seqs);
        }
    }

    [Fact]
    public async Task Sync_ConversationCreated_CarriesTheCallersUnreadCountAndLastMessage()
    {
        // It carried the current last_seq with zeros for the caller's own state: a client that counts as unread only
        // what lies past last_seq showed none of the three messages that followed as unread.
        using var alice = _factory.Api("alice");
        using var bob = _factory.Api("bob");
        var cursor = await CursorAsync(bob);
        var group = await alice.CreateGroupAsync("g", "bob");
        Parley.Server.Storage.Message last = null!;
        foreach (var text in new[] { "one", "two", "three" })
        {
            last = await alice.SendTextAsync(group.Id, text);
        }

        await bob.MarkReadAsync((await bob.ListMessagesAsync(group.Id)).Messages.Single(m => m.Content == "one").Id);
        var created = await ConversationCreatedAsync(bob, cursor);

        var rest = await bob.GetConversationAsync(group.Id);
        Assert.Equal(2, created.GetProperty("unread_count").GetInt32());
        Assert.Equal(rest.UnreadCount, created.GetProperty("unread_count").GetInt32());
        Assert.Equal(2, created.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(last.Seq, created.GetProperty("last_seq").GetInt64());
        Assert.Equal(last.Id, created.GetProperty("last_message").GetProperty("id").GetGuid());

        // The creator's replay is the creator's: nothing unread.
        var own = await ConversationCreatedAsync(alice, cursor);
        Assert.Equal(0, own.GetProperty("unread_count").GetInt32());
        Assert.Equal(last.Seq, own.GetProperty("read_up_to_seq").GetInt64());
    }

    private static async Task<JsonElement> ConversationCreatedAsync(ParleyApi api, string cursor)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(cursor)}"));
            foreach (var frame in page.GetProperty("events").EnumerateArray().Where(f => f.GetProperty("type").GetString() == "conversation_created"))
            {
                return frame.GetProperty("payload").GetProperty("conversation");
            }

            Assert.True(DateTime.UtcNow < deadline, "no conversation_created");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Sync_PagesBeforeTheLast_KeepTheTimeWatermarksAreReplayedFrom()
    {
        using var alice = _factory.Api("alice");
        using var bob = _factory.Api("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        // Issued an hour ago (cursors carry seconds): any page cursor stamped "now" would differ from it.
        Assert.True(Sync.Cursor.TryDecode(await CursorAsync(alice), out var current));
        var presented = current! with { IssuedAt = DateTimeOffset.UtcNow.AddHours(-1) };
        var cursor = presented.Encode();
        for (var i = 0; i < 3; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        var last = await alice.SendTextAsync(conversation.Id, "last");
        await bob.MarkReadAsync(last.Id);
        await ReadAllAsync(alice, cursor, limit: 100, expectedEvents: 4);

        // Watermarks come with the last page, replayed from the first cursor's time: a page cursor must keep it,
        // or a multi-page read would skip receipts that moved shortly before it began.
        var next = cursor;
        var receipts = 0;
        while (true)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await alice.GetAsync($"/api/v1/sync?cursor={next}&limit=2"));
            receipts += page.GetProperty("events").EnumerateArray().Count(
                e => e.GetProperty("type").GetString() == "message_read" && e.GetProperty("payload").GetProperty("user_id").GetString() == "bob");
            next = page.GetProperty("next_cursor").GetString()!;
            Assert.True(Sync.Cursor.TryDecode(next, out var decoded));
            if (!page.GetProperty("has_more").GetBoolean())
            {
                Assert.True(decoded!.IssuedAt > presented.IssuedAt);
                break;
            }

            Assert.Equal(presented.IssuedAt.ToUnixTimeSeconds(), decoded!.IssuedAt.ToUnixTimeSeconds());
        }

        Assert.Equal(1, receipts);
    }

    [Fact]
    public async Task Sync_OnlyTheCallersConversations()
    {
        using var alice = _factory.Api("alice");
        using var mallory = _factory.Api("mallory");
        var cursor = await CursorAsync(mallory);
        var conversation = await alice.CreateDirectAsync("bob");
        await alice.SendTextAsync(conversation.Id, "private");
        await ReadAllAsync(_factory.Api("bob"), cursor, limit: 100, expectedEvents: 2);

        var page = await ParleyApi.ReadAsync<JsonElement>(await mallory.GetAsync($"/api/v1/sync?cursor={cursor}"));

        Assert.Empty(page.GetProperty("events").EnumerateArray());
        Assert.False(page.GetProperty("has_more").GetBoolean());
    }

    [Theory]
    [InlineData("?cursor=nope", "invalid_cursor")]
    [InlineData("", "invalid_cursor")]
    public async Task Sync_MissingOrMalformedCursor_Returns400(string query, string code)
    {
        using var bob = _factory.Api("bob");

        await ParleyApi.ProblemAsync(await bob.GetAsync("/api/v1/sync" + query), HttpStatusCode.BadRequest, code);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1001")]
    [InlineData("x")]
    public async Task Sync_InvalidLimit_Returns400(string limit)
    {
        using var bob = _factory.Api("bob");
        var cursor = await CursorAsync(bob);

        await ParleyApi.ProblemAsync(await bob.GetAsync($"/api/v1/sync?cursor={cursor}&limit={limit}"), HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task Sync_TheLongestCursorRetentionAllowed_StillAnswers()
    {
        // "Now minus the retention" was before the first date .NET has: every sync, cursor upgrade and resume failed.
        await using var factory = new ParleyFactory(s => s["Delivery:CursorRetention"] = TimeSpan.MaxValue.ToString("c", System.Globalization.CultureInfo.InvariantCulture));
        using var bob = factory.Api("bob");
        var cursor = await CursorAsync(bob);

        var page = await ParleyApi.ReadAsync<JsonElement>(await bob.GetAsync($"/api/v1/sync?cursor={cursor}"));

        Assert.Equal(0, page.GetProperty("events").GetArrayLength());
    }

    [Fact]
    public async Task Sync_WithoutToken_Returns401()
    {
        using var anonymous = _factory.Anonymous();

        await ParleyApi.ProblemAsync(await anonymous.GetAsync("/api/v1/sync/cursor", TestContext.Current.CancellationToken), HttpStatusCode.Unauthorized, "unauthenticated");
    }

    private static async Task<string> CursorAsync(ParleyApi api) =>
        (await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;

    /// <summary>Follows next_cursor until the expected number of sequenced events arrived (the sequencer positions them shortly after commit).</summary>
    private static async Task<List<(Guid Conversation, long Seq)>> ReadAllAsync(ParleyApi api, string cursor, int limit, int expectedEvents)
    {
        var seen = new List<(Guid, long)>();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (seen.Count < expectedEvents && DateTime.UtcNow < deadline)
        {
            var page = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={cursor}&limit={limit}"));
            foreach (var frame in page.GetProperty("events").EnumerateArray())
            {
                var payload = frame.GetProperty("payload");
                switch (frame.GetProperty("type").GetString())
                {
                    case "new_message":
                        seen.Add((payload.GetProperty("message").GetProperty("conversation_id").GetGuid(), payload.GetProperty("message").GetProperty("seq").GetInt64()));
                        break;
                    case "conversation_created":
                        seen.Add((payload.GetProperty("conversation").GetProperty("id").GetGuid(), payload.GetProperty("seq").GetInt64()));
                        break;
                }
            }

            var next = page.GetProperty("next_cursor").GetString()!;
            // A page holds at most `limit` events; the last page adds the watermarks that moved.
            Assert.True(page.GetProperty("events").EnumerateArray().Count(e => !e.GetProperty("type").GetString()!.StartsWith("message_", StringComparison.Ordinal)
                || e.GetProperty("type").GetString() is "message_edited" or "message_deleted") <= limit);
            if (!page.GetProperty("has_more").GetBoolean() && seen.Count < expectedEvents)
            {
                await Task.Delay(20, TestContext.Current.CancellationToken);
            }

            cursor = next;
        }

        return seen;
    }
}

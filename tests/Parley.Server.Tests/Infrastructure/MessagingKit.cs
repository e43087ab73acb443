using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// Helpers for the message, history, receipt and unread tests: clients whose every request is bounded,
/// raw message bodies, history walks and the wire-shape checks of a message.
/// </summary>
internal static partial class MessagingKit
{
    /// <summary>Bounds every HTTP call of the clients below, so a hung request fails the test instead of stalling CI.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Every field of a message object on the wire, absent values included as null.</summary>
    public static readonly string[] MessageFields =
    [
        "id", "conversation_id", "seq", "sender_id", "message_type", "content", "reply_to_id", "mentions", "media", "location",
        "client_message_id", "created_at", "edited_at", "deleted_at",
    ];

    /// <summary>A user's client with a bounded request timeout.</summary>
    public static ParleyApi BoundedApi(this ParleyFactory factory, string userId)
    {
        var api = factory.Api(userId);
        api.Http.Timeout = RequestTimeout;
        return api;
    }

    /// <summary>A service-role client with a bounded request timeout.</summary>
    public static ParleyApi BoundedServiceApi(this ParleyFactory factory)
    {
        var api = factory.ServiceApi();
        api.Http.Timeout = RequestTimeout;
        return api;
    }

    /// <summary>
    /// A user's client whose token stays valid for <paramref name="lifetime"/>: for tests that move a fake clock
    /// forward by days, when a one-hour token would have expired.
    /// </summary>
    public static ParleyApi LongLivedApi(this ParleyFactory factory, string userId, TimeSpan lifetime)
    {
        var client = factory.CreateClient();
        client.Timeout = RequestTimeout;
        client.DefaultRequestHeaders.Authorization =
            new AuthenticationHeaderValue("Bearer", ParleyFactory.Token(userId, expires: DateTime.UtcNow.Add(lifetime)));
        return new ParleyApi(client);
    }

    public static Task<HttpResponseMessage> PostMessageAsync(this ParleyApi api, object body) => api.PostAsync("/api/v1/messages", body);

    /// <summary>Posts a message the server must refuse as invalid: asserts 400 <c>validation_failed</c> and returns the problem.</summary>
    public static async Task<Problem> SendInvalidAsync(this ParleyApi api, object body) =>
        await ParleyApi.ProblemAsync(await api.PostMessageAsync(body), HttpStatusCode.BadRequest, "validation_failed");

    /// <summary>A text message body.</summary>
    public static object TextBody(Guid conversationId, string content, string? clientMessageId = null) =>
        new { conversation_id = conversationId, message_type = "text", content, client_message_id = clientMessageId };

    /// <summary>The raw JSON body after asserting the status.</summary>
    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response, HttpStatusCode expected) =>
        await ParleyApi.ReadAsync<JsonElement>(response, expected);

    public static async Task<Message> EditAsync(this ParleyApi api, Guid messageId, string content) =>
        await ParleyApi.ReadAsync<Message>(await api.PutAsync($"/api/v1/messages/{messageId}", new { content }));

    public static async Task<Message> DeleteMessageAsync(this ParleyApi api, Guid messageId) =>
        await ParleyApi.ReadAsync<Message>(await api.DeleteAsync($"/api/v1/messages/{messageId}"));

    public static async Task<MessageEdits> GetEditsAsync(this ParleyApi api, Guid messageId) =>
        await ParleyApi.ReadAsync<MessageEdits>(await api.GetAsync($"/api/v1/messages/{messageId}/edits"));

    /// <summary>Every message the caller can see, oldest first, walked forward in pages of <paramref name="pageSize"/>.</summary>
    public static async Task<List<Message>> WholeHistoryAsync(this ParleyApi api, Guid conversationId, int pageSize = 100)
    {
        var all = new List<Message>();
        string query = $"?after=0&limit={pageSize}";
        for (var pages = 0; pages < 10_000; pages++)
        {
            var page = await api.ListMessagesAsync(conversationId, query);
            all.AddRange(page.Messages);
            if (page.NextCursor is not { } next)
            {
                Assert.False(page.HasMore, "has_more without a next_cursor");
                return all;
            }

            Assert.True(page.HasMore, "next_cursor without has_more");
            query = $"?after={next.ToString(CultureInfo.InvariantCulture)}&limit={pageSize}";
        }

        throw new InvalidOperationException("The history walk did not end.");
    }

    /// <summary>The caller's conversations by id, from one page of the list (tests have few conversations).</summary>
    public static async Task<Dictionary<Guid, Protocol.Conversation>> ConversationsByIdAsync(this ParleyApi api)
    {
        var list = await api.ListConversationsAsync("?limit=100");
        Assert.Null(list.NextCursor);
        return list.Conversations.ToDictionary(c => c.Id);
    }

    /// <summary>
    /// Asserts the wire shape of a message: exactly the documented fields in snake_case, nulls written out,
    /// a UUIDv7 id and RFC 3339 UTC timestamps.
    /// </summary>
    public static void AssertMessageShape(JsonElement message)
    {
        Assert.Equal(JsonValueKind.Object, message.ValueKind);
        var names = message.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(MessageFields.Order(StringComparer.Ordinal), names.Order(StringComparer.Ordinal));
        AssertUuidV7(message.GetProperty("id").GetString());
        AssertTimestamp(message.GetProperty("created_at").GetString());
        foreach (var field in new[] { "edited_at", "deleted_at" })
        {
            var value = message.GetProperty(field);
            if (value.ValueKind != JsonValueKind.Null)
            {
                AssertTimestamp(value.GetString());
            }
        }
    }

    /// <summary>RFC 9562 version 7: version nibble 7, variant 10xx.</summary>
    public static void AssertUuidV7(string? id)
    {
        Assert.NotNull(id);
        Assert.Matches(UuidV7(), id);
    }

    /// <summary>RFC 3339 in UTC ("Z"), and a real date near now (not year 1, not the epoch).</summary>
    public static DateTimeOffset AssertTimestamp(string? value)
    {
        Assert.NotNull(value);
        Assert.Matches(Rfc3339Utc(), value);
        var parsed = DateTimeOffset.Parse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
        Assert.InRange(parsed, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return parsed;
    }

    /// <summary>The Unix-millisecond timestamp in the first 48 bits of a UUIDv7.</summary>
    public static DateTimeOffset UuidV7Time(Guid id) =>
        DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(id.ToString("N")[..12], NumberStyles.HexNumber, CultureInfo.InvariantCulture));

    [GeneratedRegex("^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]
    private static partial Regex UuidV7();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")]
    private static partial Regex Rfc3339Utc();
}

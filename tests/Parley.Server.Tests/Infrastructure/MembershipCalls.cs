using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Parley.Server.Protocol;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>Raw conversation and membership requests (the response is the test's to judge), and small readers of the results.</summary>
internal static class MembershipCalls
{
    /// <summary>A user id no other test uses, readable in failure messages (<c>alice-3f9c2a1b</c>).</summary>
    public static string NewUser(string name) => $"{name}-{Guid.NewGuid().ToString("N")[..8]}";

    public static Task<HttpResponseMessage> CreateAsync(ParleyApi api, object body) => api.PostAsync("/api/v1/conversations", body);

    public static Task<HttpResponseMessage> AddAsync(ParleyApi api, Guid conversationId, params string[] userIds) =>
        api.PostAsync($"/api/v1/conversations/{conversationId}/participants", new { user_ids = userIds });

    public static Task<HttpResponseMessage> SetRoleAsync(ParleyApi api, Guid conversationId, string userId, string role) =>
        api.PatchAsync($"/api/v1/conversations/{conversationId}/participants/{Uri.EscapeDataString(userId)}", new { role });

    public static Task<HttpResponseMessage> RemoveAsync(ParleyApi api, Guid conversationId, string userId) =>
        api.DeleteAsync($"/api/v1/conversations/{conversationId}/participants/{Uri.EscapeDataString(userId)}");

    /// <summary>Adds members and asserts 200 with the conversation after the change.</summary>
    public static async Task<Conversation> AddOkAsync(ParleyApi api, Guid conversationId, params string[] userIds) =>
        await ParleyApi.ReadAsync<Conversation>(await AddAsync(api, conversationId, userIds));

    /// <summary>Changes a role and asserts 200 with the participant.</summary>
    public static async Task<Participant> SetRoleOkAsync(ParleyApi api, Guid conversationId, string userId, string role) =>
        await ParleyApi.ReadAsync<Participant>(await SetRoleAsync(api, conversationId, userId, role));

    /// <summary>Removes a member (or leaves) and asserts 204.</summary>
    public static async Task RemoveOkAsync(ParleyApi api, Guid conversationId, string userId)
    {
        using var response = await RemoveAsync(api, conversationId, userId);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, $"Expected 204 but got {(int)response.StatusCode}: {body}");
    }

    /// <summary>user id → role of the conversation's current members.</summary>
    public static Dictionary<string, string> RolesOf(Conversation conversation) =>
        conversation.Participants.ToDictionary(p => p.UserId, p => p.Role);

    /// <summary>The conversation's events in a socket's frames, in arrival order: (type, seq).</summary>
    public static List<(string Type, long Seq)> ConversationEvents(WsClient client, Guid conversationId) =>
        client.All()
            .Select(f => (Type: f.GetProperty("type").GetString()!, Payload: f.GetProperty("payload")))
            .Where(f => ConversationIdOf(f.Payload) == conversationId && SeqOf(f.Type, f.Payload) is not null)
            .Select(f => (f.Type, SeqOf(f.Type, f.Payload)!.Value))
            .ToList();

    private static Guid? ConversationIdOf(JsonElement payload)
    {
        if (payload.TryGetProperty("conversation_id", out var id))
        {
            return id.GetGuid();
        }

        if (payload.TryGetProperty("message", out var message))
        {
            return message.GetProperty("conversation_id").GetGuid();
        }

        return payload.TryGetProperty("conversation", out var conversation) ? conversation.GetProperty("id").GetGuid() : null;
    }

    private static long? SeqOf(string type, JsonElement payload) => type switch
    {
        "new_message" => payload.GetProperty("message").GetProperty("seq").GetInt64(),
        "conversation_created" or "message_edited" or "message_deleted" or "participant_added" or "participant_removed" or "participant_updated" =>
            payload.GetProperty("seq").GetInt64(),
        _ => null,
    };
}

/// <summary>A WebSocket handshake made by hand (no Authorization header unless the test sets one): the first frame, or the refusal.</summary>
internal static class Handshake
{
    /// <summary>Connects and returns the socket with the payload of its first frame (which must be <c>connected</c>).</summary>
    public static async Task<(ClientWebSocket Socket, JsonElement Connected)> ConnectAsync(Uri uri, Action<ClientWebSocketOptions>? configure = null)
    {
        var ct = TestContext.Current.CancellationToken;
        var socket = new ClientWebSocket();
        configure?.Invoke(socket.Options);
        await socket.ConnectAsync(uri, ct).WaitAsync(WsClient.DefaultTimeout, ct);
        var buffer = new byte[64 * 1024];
        var count = 0;
        WebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(new ArraySegment<byte>(buffer, count, buffer.Length - count), ct).WaitAsync(WsClient.DefaultTimeout, ct);
            count += result.Count;
        }
        while (!result.EndOfMessage);

        var frame = JsonDocument.Parse(Encoding.UTF8.GetString(buffer, 0, count)).RootElement.Clone();
        Assert.Equal("connected", frame.GetProperty("type").GetString());
        return (socket, frame.GetProperty("payload"));
    }

    /// <summary>Asserts that the handshake is refused with <paramref name="status"/>.</summary>
    public static async Task AssertRefusedAsync(Uri uri, HttpStatusCode status, Action<ClientWebSocketOptions>? configure = null)
    {
        var ct = TestContext.Current.CancellationToken;
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        configure?.Invoke(socket.Options);
        await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(uri, ct).WaitAsync(WsClient.DefaultTimeout, ct));
        Assert.Equal(status, socket.HttpStatusCode);
    }

    public static async Task CloseAsync(ClientWebSocket socket)
    {
        try
        {
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(3));
        }
        catch (Exception ex) when (ex is WebSocketException or TimeoutException or OperationCanceledException)
        {
            socket.Abort();
        }

        socket.Dispose();
    }
}

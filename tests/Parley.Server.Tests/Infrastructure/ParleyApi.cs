using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>Wire JSON as a client sees it: snake_case, server types read back through the same names.</summary>
internal static class Wire
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        TypeInfoResolver = JsonTypeInfoResolver.Combine(ParleyJsonContext.Default, new DefaultJsonTypeInfoResolver()),
        Converters = { new UtcTimestampConverter() },
    };

    public static T Read<T>(JsonElement element) => element.Deserialize<T>(Options)!;
}

/// <summary>A ProblemDetails response as clients read it.</summary>
internal sealed record Problem(HttpStatusCode Status, string? Code, string? Detail, JsonElement Body)
{
    public IReadOnlyList<string> ErrorFields =>
        Body.TryGetProperty("errors", out var errors) ? errors.EnumerateObject().Select(p => p.Name).ToList() : [];
}

/// <summary>Typed calls of Parley's REST API for one caller.</summary>
internal sealed class ParleyApi(HttpClient http) : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public HttpClient Http => http;

    public void Dispose() => http.Dispose();

    public Task<HttpResponseMessage> PostAsync(string path, object? body) => SendAsync(HttpMethod.Post, path, body);

    public Task<HttpResponseMessage> PutAsync(string path, object? body) => SendAsync(HttpMethod.Put, path, body);

    public Task<HttpResponseMessage> PatchAsync(string path, object? body) => SendAsync(HttpMethod.Patch, path, body);

    public Task<HttpResponseMessage> GetAsync(string path) => http.GetAsync(path, Ct);

    public Task<HttpResponseMessage> DeleteAsync(string path) => http.DeleteAsync(path, Ct);

    /// <summary>Sends a body: a string is sent as is (raw JSON), anything else serialized in snake_case.</summary>
    public Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is string raw)
        {
            request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        }
        else if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: Wire.Options);
        }

        return http.SendAsync(request, Ct);
    }

    public async Task<Conversation> CreateDirectAsync(string otherUserId) =>
        await ReadAsync<Conversation>(await PostAsync("/api/v1/conversations", new { type = "direct", participant_ids = new[] { otherUserId } }), HttpStatusCode.Created, HttpStatusCode.OK);

    public async Task<Conversation> CreateGroupAsync(string? name, params string[] participantIds) =>
        await ReadAsync<Conversation>(await PostAsync("/api/v1/conversations", new { type = "group", participant_ids = participantIds, name }), HttpStatusCode.Created);

    public async Task<Message> SendTextAsync(Guid conversationId, string content, string? clientMessageId = null) =>
        await ReadAsync<Message>(
            await PostAsync("/api/v1/messages", new { conversation_id = conversationId, content, message_type = "text", client_message_id = clientMessageId }),
            HttpStatusCode.Created);

    public async Task<Message> GetMessageAsync(Guid id) => await ReadAsync<Message>(await GetAsync($"/api/v1/messages/{id}"));

    public async Task<Conversation> GetConversationAsync(Guid id) => await ReadAsync<Conversation>(await GetAsync($"/api/v1/conversations/{id}"));

    public async Task<ConversationList> ListConversationsAsync(string query = "") =>
        await ReadAsync<ConversationList>(await GetAsync("/api/v1/conversations" + query));

    public async Task<MessagePage> ListMessagesAsync(Guid conversationId, string query = "") =>
        await ReadAsync<MessagePage>(await GetAsync($"/api/v1/conversations/{conversationId}/messages{query}"));

    public async Task<JsonElement> MarkReadAsync(Guid messageId) =>
        await ReadAsync<JsonElement>(await PostAsync($"/api/v1/messages/{messageId}/read", null));

    /// <summary>Reads the body as <typeparamref name="T"/> after asserting the status (200 unless given).</summary>
    public static async Task<T> ReadAsync<T>(HttpResponseMessage response, params HttpStatusCode[] expected)
    {
        var body = await response.Content.ReadAsStringAsync(Ct);
        var allowed = expected.Length == 0 ? [HttpStatusCode.OK] : expected;
        Assert.True(allowed.Contains(response.StatusCode), $"Expected {string.Join("/", allowed)} but got {(int)response.StatusCode}: {body}");
        return JsonSerializer.Deserialize<T>(body, Wire.Options)!;
    }

    /// <summary>Asserts a ProblemDetails response with the status (and code, when given).</summary>
    public static async Task<Problem> ProblemAsync(HttpResponseMessage response, HttpStatusCode status, string? code = null)
    {
        var body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == status, $"Expected {(int)status} but got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var json = JsonDocument.Parse(body).RootElement.Clone();
        var problem = new Problem(
            response.StatusCode,
            json.TryGetProperty("code", out var c) ? c.GetString() : null,
            json.TryGetProperty("detail", out var d) ? d.GetString() : null,
            json);
        Assert.Equal((int)status, json.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.Code), $"ProblemDetails without a code: {body}");
        if (code is not null)
        {
            Assert.Equal(code, problem.Code);
        }

        return problem;
    }
}

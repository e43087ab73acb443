using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Parley.Client.Protocol;

namespace Parley.Client;

/// <summary>
/// Typed calls of Parley's REST API (docs/api.md) for one caller. Thread-safe; every method throws
/// <see cref="ParleyApiException"/> when the server answers with an error.
/// </summary>
public sealed class ParleyClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    /// <summary>Creates a client.</summary>
    /// <param name="baseAddress">The server, e.g. <c>https://chat.example.com/</c> (a path prefix is kept).</param>
    /// <param name="credentials">How to authenticate.</param>
    /// <param name="httpClient">An HttpClient to use (for example from IHttpClientFactory); not disposed by this client. Its BaseAddress is ignored.</param>
    public ParleyClient(Uri baseAddress, ParleyCredentials credentials, HttpClient? httpClient = null)
    {
        ArgumentNullException.ThrowIfNull(baseAddress);
        ArgumentNullException.ThrowIfNull(credentials);
        if (!baseAddress.IsAbsoluteUri)
        {
            throw new ArgumentException("The base address must be absolute.", nameof(baseAddress));
        }

        // With a trailing slash, relative paths extend the base's path instead of replacing its last segment.
        BaseAddress = baseAddress.AbsoluteUri.EndsWith('/') ? baseAddress : new Uri(baseAddress.AbsoluteUri + "/");
        Credentials = credentials;
        _http = httpClient ?? new HttpClient();
        _ownsHttp = httpClient is null;
    }

    /// <summary>The server's address.</summary>
    public Uri BaseAddress { get; }

    /// <summary>The credentials every request carries.</summary>
    public ParleyCredentials Credentials { get; }

    /// <summary><c>GET /api/v1/config</c>: the deployment's limits.</summary>
    public Task<ClientConfig> GetConfigAsync(CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Get, "api/v1/config", WireJson.Default.ClientConfig, cancellationToken);

    /// <summary>
    /// <c>POST /api/v1/conversations</c>: a new conversation, or the existing direct conversation of the pair.
    /// </summary>
    public Task<Conversation> CreateConversationAsync(CreateConversationRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return SendAsync(
            HttpMethod.Post, "api/v1/conversations", JsonContent.Create(request, WireJson.Default.CreateConversationRequest),
            WireJson.Default.Conversation, cancellationToken);
    }

    /// <summary><c>GET /api/v1/conversations</c>: the caller's conversations, most recent activity first.</summary>
    /// <param name="limit">1–100 (server default 20).</param>
    /// <param name="cursor">The previous page's <see cref="ConversationList.NextCursor"/>.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    public Task<ConversationList> ListConversationsAsync(int? limit = null, string? cursor = null, CancellationToken cancellationToken = default) =>
        SendAsync(
            HttpMethod.Get, "api/v1/conversations" + Query(("limit", Format(limit)), ("cursor", cursor)),
            WireJson.Default.ConversationList, cancellationToken);

    /// <summary><c>GET /api/v1/conversations/{id}</c>.</summary>
    public Task<Conversation> GetConversationAsync(Guid conversationId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Get, $"api/v1/conversations/{conversationId}", WireJson.Default.Conversation, cancellationToken);

    /// <summary><c>POST /api/v1/conversations/{id}/participants</c>: adds members (existing ones are ignored).</summary>
    public Task<Conversation> AddParticipantsAsync(Guid conversationId, IEnumerable<string> userIds, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userIds);
        return SendAsync(
            HttpMethod.Post, $"api/v1/conversations/{conversationId}/participants",
            JsonContent.Create(new AddParticipantsRequest([.. userIds]), WireJson.Default.AddParticipantsRequest),
            WireJson.Default.Conversation, cancellationToken);
    }

    /// <summary><c>PATCH /api/v1/conversations/{id}/participants/{user_id}</c>: changes a member's role.</summary>
    public Task<Participant> UpdateParticipantAsync(Guid conversationId, string userId, string role, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        return SendAsync(
            HttpMethod.Patch, $"api/v1/conversations/{conversationId}/participants/{Uri.EscapeDataString(userId)}",
            JsonContent.Create(new UpdateParticipantRequest(role), WireJson.Default.UpdateParticipantRequest),
            WireJson.Default.Participant, cancellationToken);
    }

    /// <summary><c>DELETE /api/v1/conversations/{id}/participants/{user_id}</c>: removes a member; one's own id leaves.</summary>
    public Task RemoveParticipantAsync(Guid conversationId, string userId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        return SendAsync(
            HttpMethod.Delete, $"api/v1/conversations/{conversationId}/participants/{Uri.EscapeDataString(userId)}", null, cancellationToken);
    }

    /// <summary><c>POST /api/v1/conversations/{id}/typing</c>: starts (refresh every few seconds) or stops the typing indicator.</summary>
    public Task SetTypingAsync(Guid conversationId, bool isTyping, CancellationToken cancellationToken = default) =>
        SendAsync(
            HttpMethod.Post, $"api/v1/conversations/{conversationId}/typing",
            JsonContent.Create(new TypingRequest(isTyping), WireJson.Default.TypingRequest), cancellationToken);

    /// <summary>
    /// <c>POST /api/v1/messages</c>. With a <see cref="SendMessageRequest.ClientMessageId"/>, a retry returns the
    /// original message instead of creating a second one.
    /// </summary>
    public Task<Message> SendMessageAsync(SendMessageRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return SendAsync(
            HttpMethod.Post, "api/v1/messages", JsonContent.Create(request, WireJson.Default.SendMessageRequest),
            WireJson.Default.Message, cancellationToken);
    }

    /// <summary><c>GET /api/v1/messages/{id}</c>: the message, or its tombstone.</summary>
    public Task<Message> GetMessageAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Get, $"api/v1/messages/{messageId}", WireJson.Default.Message, cancellationToken);

    /// <summary><c>PUT /api/v1/messages/{id}</c>: edits the caller's message inside the edit window.</summary>
    public Task<Message> EditMessageAsync(Guid messageId, EditMessageRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return SendAsync(
            HttpMethod.Put, $"api/v1/messages/{messageId}", JsonContent.Create(request, WireJson.Default.EditMessageRequest),
            WireJson.Default.Message, cancellationToken);
    }

    /// <summary><c>DELETE /api/v1/messages/{id}</c>: deletes for everyone; returns the tombstone.</summary>
    public Task<Message> DeleteMessageAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Delete, $"api/v1/messages/{messageId}", WireJson.Default.Message, cancellationToken);

    /// <summary><c>GET /api/v1/messages/{id}/edits</c>: earlier versions, oldest first.</summary>
    public Task<MessageEdits> GetMessageEditsAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Get, $"api/v1/messages/{messageId}/edits", WireJson.Default.MessageEdits, cancellationToken);

    /// <summary>
    /// <c>GET /api/v1/conversations/{id}/messages</c>. Neither <paramref name="before"/> nor <paramref name="after"/>:
    /// the newest page, newest first; <paramref name="before"/>: older than that seq, newest first;
    /// <paramref name="after"/>: newer than that seq, oldest first.
    /// </summary>
    public Task<MessagePage> ListMessagesAsync(
        Guid conversationId, int? limit = null, long? before = null, long? after = null, CancellationToken cancellationToken = default) =>
        SendAsync(
            HttpMethod.Get,
            $"api/v1/conversations/{conversationId}/messages" + Query(("limit", Format(limit)), ("before", Format(before)), ("after", Format(after))),
            WireJson.Default.MessagePage, cancellationToken);

    /// <summary>
    /// <c>GET /api/v1/users/{user_id}/presence</c>: whether a user who shares a conversation with the caller is online, or when
    /// they were last seen (404 for anyone else).
    /// </summary>
    public Task<UserPresence> GetPresenceAsync(string userId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Get, $"api/v1/users/{Uri.EscapeDataString(userId)}/presence", WireJson.Default.UserPresence, cancellationToken);

    /// <summary><c>POST /api/v1/messages/{id}/read</c>: the caller has read everything up to and including the message.</summary>
    public Task<ReadState> MarkReadAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Post, $"api/v1/messages/{messageId}/read", null, WireJson.Default.ReadState, cancellationToken);

    /// <summary>
    /// <c>GET /api/v1/sync</c>: the events after <paramref name="cursor"/> (docs/delivery.md). Call again with
    /// <see cref="SyncPage.NextCursor"/> while <see cref="SyncPage.HasMore"/>. An expired cursor is 410
    /// <c>cursor_expired</c>: reload over REST and continue from <see cref="GetSyncCursorAsync"/>.
    /// </summary>
    /// <param name="cursor">A cursor the server issued.</param>
    /// <param name="limit">1–1000 events (server default 200).</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    public async Task<SyncPage> SyncAsync(string cursor, int? limit = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(cursor);
        var page = await SendAsync(
            HttpMethod.Get, "api/v1/sync" + Query(("cursor", cursor), ("limit", Format(limit))), WireJson.Default.SyncPageWire, cancellationToken);
        var events = page.Events.Select(e => e.Payload).OfType<ParleyEvent>().ToList();
        return new SyncPage(events, page.NextCursor, page.HasMore);
    }

    /// <summary><c>GET /api/v1/sync/cursor</c>: the current position, to follow changes after loading state over REST.</summary>
    public async Task<string> GetSyncCursorAsync(CancellationToken cancellationToken = default) =>
        (await SendAsync(HttpMethod.Get, "api/v1/sync/cursor", WireJson.Default.SyncCursorWire, cancellationToken)).Cursor;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    private Task<T> SendAsync<T>(HttpMethod method, string path, JsonTypeInfo<T> result, CancellationToken cancellationToken) =>
        SendAsync(method, path, null, result, cancellationToken);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? body, JsonTypeInfo<T> result, CancellationToken cancellationToken)
    {
        using var response = await SendCoreAsync(method, path, body, cancellationToken);
        return await response.Content.ReadFromJsonAsync(result, cancellationToken)
            ?? throw new JsonException($"{method} {path} answered {(int)response.StatusCode} without a body.");
    }

    private async Task SendAsync(HttpMethod method, string path, HttpContent? body, CancellationToken cancellationToken)
    {
        using var response = await SendCoreAsync(method, path, body, cancellationToken);
    }

    private async Task<HttpResponseMessage> SendCoreAsync(HttpMethod method, string path, HttpContent? body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(BaseAddress, path)) { Content = body };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        foreach (var (name, value) in await Credentials.GetHeadersAsync(cancellationToken))
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            throw await ToExceptionAsync(response, cancellationToken);
        }
    }

    /// <summary>ProblemDetails (with its <c>code</c> and field <c>errors</c>), or the bare status when the body is not one (a proxy's page).</summary>
    private static async Task<ParleyApiException> ToExceptionAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        ProblemWire? problem = null;
        if (response.Content.Headers.ContentType?.MediaType is { } mediaType && mediaType.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                problem = await response.Content.ReadFromJsonAsync(WireJson.Default.ProblemWire, cancellationToken);
            }
            catch (JsonException)
            {
                // Not ProblemDetails after all: the status alone describes the failure.
            }
        }

        var retryAfter = response.Headers.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - DateTimeOffset.UtcNow,
            _ => (TimeSpan?)null,
        };
        return new ParleyApiException(
            response.StatusCode,
            problem?.Code ?? DefaultCode(response.StatusCode),
            problem?.Detail ?? problem?.Title ?? response.ReasonPhrase,
            problem?.Errors,
            retryAfter);
    }

    private static string DefaultCode(HttpStatusCode status) => (int)status switch
    {
        401 => ParleyErrorCodes.Unauthenticated,
        403 => ParleyErrorCodes.Forbidden,
        404 => ParleyErrorCodes.NotFound,
        429 => ParleyErrorCodes.RateLimited,
        503 => ParleyErrorCodes.ServiceUnavailable,
        >= 500 => ParleyErrorCodes.InternalError,
        _ => ParleyErrorCodes.InvalidRequest,
    };

    private static string? Format(long? value) => value?.ToString(CultureInfo.InvariantCulture);

    private static string Query(params (string Name, string? Value)[] parameters)
    {
        var present = parameters.Where(p => p.Value is not null).Select(p => $"{p.Name}={Uri.EscapeDataString(p.Value!)}").ToList();
        return present.Count == 0 ? "" : "?" + string.Join('&', present);
    }
}

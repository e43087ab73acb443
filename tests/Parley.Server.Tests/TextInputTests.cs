using System.Net;
using System.Text.Json;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// One rule for text on both stores (docs/api.md, "Text"), over REST and the socket's send_message alike: U+0000
/// and lone surrogates are refused everywhere, message content keeps tab, line feed and carriage return and refuses
/// every other control character, single-line fields refuse them all.
/// Reproduction: content "hello \u0000world" was stored as "hello " on SQLite (201, mentions now past the end; 4,096
/// NULs gave an empty text message and an identical retry 409) and was 503 service_unavailable with Retry-After on
/// PostgreSQL (SQLSTATE 22021), a permanent error reported as retryable.
/// </summary>
public sealed class TextInputTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Theory]
    [InlineData("hello \u0000world", "U+0000")]
    [InlineData("\u0000", "U+0000")]
    [InlineData("bell \u0007", "U+0007")]
    [InlineData("escape \u001b[31m red", "U+001B")]
    [InlineData("delete \u007f", "U+007F")]
    [InlineData("next line \u0085", "U+0085")]
    public async Task Send_ContentWithAForbiddenCharacter_Returns400NamingIt(string content, string named)
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        using var response = await api.PostAsync("/api/v1/messages", new { conversation_id = conversation.Id, message_type = "text", content, client_message_id = "c-1" });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["content"], problem.ErrorFields);
        Assert.Contains(named, problem.Detail, StringComparison.Ordinal);
        Assert.Null(response.Headers.RetryAfter);
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task Send_ContentOfOnlyNuls_Returns400AndARetryIsRefusedTheSameWay()
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var body = new { conversation_id = conversation.Id, message_type = "text", content = new string('\0', 4096), client_message_id = "nul-1" };

        using var first = await api.PostAsync("/api/v1/messages", body);
        using var retry = await api.PostAsync("/api/v1/messages", body);

        await ParleyApi.ProblemAsync(first, HttpStatusCode.BadRequest, "validation_failed");
        await ParleyApi.ProblemAsync(retry, HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task Send_ContentWithTabsNewlinesAndFormatCharacters_IsStoredExactly()
    {
        // Tab, LF and CR are text; so are the zero-width joiner of an emoji sequence and a direction mark.
        const string content = "line 1\r\nline 2\n\tindented \U0001F469\u200D\U0001F4BB \u200Fעברית";
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        var sent = await api.SendTextAsync(conversation.Id, content);

        Assert.Equal(content, sent.Content);
        Assert.Equal(content, (await api.GetMessageAsync(sent.Id)).Content);
    }

    [Fact]
    public async Task Edit_ContentWithNul_Returns400AndKeepsTheMessage()
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var sent = await api.SendTextAsync(conversation.Id, "original");

        using var response = await api.PutAsync($"/api/v1/messages/{sent.Id}", new { content = "edited\u0000" });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["content"], problem.ErrorFields);
        Assert.Equal("original", (await api.GetMessageAsync(sent.Id)).Content);
    }

    [Fact]
    public async Task Send_ContentWithALoneSurrogate_Returns400()
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        using var response = await api.PostAsync(
            "/api/v1/messages", $$"""{"conversation_id":"{{conversation.Id}}","message_type":"text","content":"half \ud83d a pair"}""");

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains(problem.Code, new[] { "invalid_request", "validation_failed" });
    }

    public static TheoryData<string, object> SingleLineFields => new()
    {
        { "media.url", new { message_type = "image", media = new { url = "https://cdn.example.com/a\u0000.png", mime_type = "image/png", size_bytes = 1 } } },
        { "media.mime_type", new { message_type = "image", media = new { url = "https://cdn.example.com/a.png", mime_type = "image/png\u0000", size_bytes = 1 } } },
        { "media.file_name", new { message_type = "file", media = new { url = "https://cdn.example.com/a", mime_type = "text/plain", size_bytes = 1, file_name = "a\u0000.txt" } } },
        { "media.file_name", new { message_type = "file", media = new { url = "https://cdn.example.com/a", mime_type = "text/plain", size_bytes = 1, file_name = "two\nlines.txt" } } },
        { "media.thumbnail_url", new { message_type = "video", media = new { url = "https://cdn.example.com/v.mp4", mime_type = "video/mp4", size_bytes = 1, thumbnail_url = "https://cdn.example.com/t\u0001.png" } } },
        { "location.name", new { message_type = "location", location = new { latitude = 1.0, longitude = 2.0, name = "Caf\u0000e" } } },
        { "content", new { message_type = "location", content = "caption\u0000", location = new { latitude = 1.0, longitude = 2.0 } } },
    };

    [Theory]
    [MemberData(nameof(SingleLineFields))]
    public async Task Send_FieldWithAControlCharacter_Returns400NamingTheField(string field, object parts)
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        var body = JsonSerializer.SerializeToNode(parts, Wire.Options)!.AsObject();
        body["conversation_id"] = conversation.Id.ToString();

        using var response = await api.PostAsync("/api/v1/messages", body.ToJsonString());

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal([field], problem.ErrorFields);
    }

    [Theory]
    [InlineData("Team\u0000")]
    [InlineData("Two\nlines")]
    [InlineData("Tab\tbed")]
    public async Task CreateGroup_NameWithAControlCharacter_Returns400(string name)
    {
        using var api = _factory.Api(NewUser("alice"));

        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { NewUser("bob") }, name });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["name"], problem.ErrorFields);
        Assert.Empty((await api.ListConversationsAsync()).Conversations);
    }

    [Fact]
    public async Task CreateGroup_UnicodeName_IsKept()
    {
        using var api = _factory.Api(NewUser("alice"));

        var group = await api.CreateGroupAsync("Équipe \U0001F680 東京");

        Assert.Equal("Équipe \U0001F680 東京", group.Name);
    }

    [Theory]
    [InlineData("participant_ids[0]", "bob\u0000")]
    [InlineData("owner_id", "bob\u0000")]
    public async Task CreateGroup_UserIdWithNul_Returns400(string field, string userId)
    {
        using var service = _factory.ServiceApi();
        var body = field == "owner_id"
            ? (object)new { type = "group", participant_ids = new[] { NewUser("carol") }, owner_id = userId }
            : new { type = "group", participant_ids = new[] { userId } };

        using var response = await CreateAsync(service, body);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains(field, problem.ErrorFields);
    }

    [Fact]
    public async Task SendOverSocket_ContentWithNul_IsAnErrorFrameNamingTheSend()
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        await using var socket = await WsClient.ConnectAsync(_factory, alice);

        await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "hello \u0000world", client_message_id = "ws-nul" });

        var error = await socket.NextAsync("error");
        Assert.Equal("validation_failed", error.GetProperty("code").GetString());
        Assert.Equal("ws-nul", error.GetProperty("client_message_id").GetString());
        Assert.Contains("U+0000", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }
}

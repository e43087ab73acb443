using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>Auth:Mode=Jwt (bearer tokens, access_token on the WebSocket) and the service role (API key or role claim).</summary>
public sealed class AuthenticationTests : IAsyncLifetime
{
    private static readonly string SomeId = Guid.CreateVersion7().ToString();

    private readonly ParleyFactory _factory = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    public static TheoryData<string, string> ProtectedEndpoints => new()
    {
        { "GET", "/api/v1/conversations" },
        { "POST", "/api/v1/conversations" },
        { "GET", $"/api/v1/conversations/{SomeId}" },
        { "POST", $"/api/v1/conversations/{SomeId}/participants" },
        { "PATCH", $"/api/v1/conversations/{SomeId}/participants/bob" },
        { "DELETE", $"/api/v1/conversations/{SomeId}/participants/bob" },
        { "GET", $"/api/v1/conversations/{SomeId}/messages" },
        { "POST", $"/api/v1/conversations/{SomeId}/typing" },
        { "POST", "/api/v1/messages" },
        { "GET", $"/api/v1/messages/{SomeId}" },
        { "PUT", $"/api/v1/messages/{SomeId}" },
        { "DELETE", $"/api/v1/messages/{SomeId}" },
        { "GET", $"/api/v1/messages/{SomeId}/edits" },
        { "POST", $"/api/v1/messages/{SomeId}/read" },
        { "GET", "/ws" },
    };

    [Theory]
    [MemberData(nameof(ProtectedEndpoints))]
    public async Task Request_WithoutCredentials_Returns401Unauthenticated(string method, string path)
    {
        using var client = _factory.Anonymous();
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method is "POST" or "PUT" or "PATCH")
        {
            request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
        }

        using var response = await client.SendAsync(request, Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Theory]
    [InlineData("https://idp.example/realms/app", HttpStatusCode.OK)]
    [InlineData("https://idp.example/realms/other", HttpStatusCode.Unauthorized)] // another realm signed with the same keys
    public async Task Authority_WithoutAConfiguredIssuer_TheDiscoveryDocumentsIssuerIsRequired(string issuer, HttpStatusCode expected)
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var key = new RsaSecurityKey(rsa) { KeyId = "k1" };
        await using var factory = new ParleyFactory(
            settings =>
            {
                settings["Auth:Jwt:SigningKey"] = null;
                settings["Auth:Jwt:Issuer"] = null;
                settings["Auth:Jwt:Authority"] = "https://idp.example/realms/app";
                settings["Auth:Jwt:Audience"] = "parley";
            },
            services: services => Microsoft.Extensions.DependencyInjection.OptionsServiceCollectionExtensions.PostConfigure<Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerOptions>(
                services,
                Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerDefaults.AuthenticationScheme,
                jwt =>
                {
                    // The discovery document, as the identity provider would serve it (no network in tests).
                    var discovery = new Microsoft.IdentityModel.Protocols.OpenIdConnect.OpenIdConnectConfiguration { Issuer = "https://idp.example/realms/app" };
                    discovery.SigningKeys.Add(key);
                    jwt.ConfigurationManager =
                        new Microsoft.IdentityModel.Protocols.StaticConfigurationManager<Microsoft.IdentityModel.Protocols.OpenIdConnect.OpenIdConnectConfiguration>(discovery);
                }));
        using var client = factory.Anonymous();
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = "parley",
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.RsaSha256),
        });
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

        using var response = await client.GetAsync("/api/v1/conversations", Ct);

        Assert.Equal(expected, response.StatusCode);
    }

    [Fact]
    public async Task Request_WithValidToken_IsTheTokensSubject()
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);

        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        Assert.Equal(alice, conversation.CreatedBy);
    }

    public static TheoryData<string, string> BadTokens => new()
    {
        { "wrong signing key", ParleyFactory.Token("alice", key: "another-signing-key-0123456789abcdef-xyz") },
        { "wrong issuer", ParleyFactory.Token("alice", issuer: "someone-else") },
        { "wrong audience", ParleyFactory.Token("alice", audience: "another-api") },
        { "expired two minutes ago", ParleyFactory.Token("alice", expires: DateTime.UtcNow.AddMinutes(-2)) },
        { "unsigned (alg none)", Unsigned(new Dictionary<string, object> { ["sub"] = "alice" }) },
        { "sub with a space", ParleyFactory.Token("alice smith") },
        { "sub with a zero-width space", ParleyFactory.Token("alice\u200B") },
        { "empty sub", ParleyFactory.Token("") },
        { "not a JWT", "not-a-token" },
        { "tampered payload", Tampered(ParleyFactory.Token("alice"), "mallory") },
    };

    [Theory]
    [MemberData(nameof(BadTokens))]
    public async Task Request_WithBadToken_Returns401Unauthenticated(string why, string token)
    {
        using var client = _factory.Anonymous();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

        using var response = await client.GetAsync("/api/v1/conversations", Ct);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.False(string.IsNullOrEmpty(problem.Detail), why);
    }

    [Fact]
    public async Task Request_UserTokenWithTheServicesSenderId_Returns401()
    {
        // "system" is Auth:ServiceUserId: a user with that id could pass for the service's system messages.
        using var client = _factory.Anonymous();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ParleyFactory.Token("system"));

        using var response = await client.GetAsync("/api/v1/conversations", Ct);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.Contains("reserved", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocket_TokenAsAccessTokenQueryParameter_Connects()
    {
        var alice = NewUser("alice");
        var token = ParleyFactory.Token(alice);

        var (socket, connected) = await Handshake.ConnectAsync(_factory.WebSocketUri($"access_token={token}&device_id=browser-1"));
        await Handshake.CloseAsync(socket);

        Assert.Equal(alice, connected.GetProperty("user_id").GetString());
        Assert.Equal("browser-1", connected.GetProperty("device_id").GetString());
    }

    [Fact]
    public async Task RestRequest_AccessTokenInQuery_IsIgnored()
    {
        // access_token belongs to the WebSocket URL (browsers cannot set headers there); REST ignored it only in name.
        using var client = _factory.Anonymous();

        using var response = await client.GetAsync($"/api/v1/conversations?access_token={ParleyFactory.Token(NewUser("alice"))}", Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
    }

    [Fact]
    public async Task RestRequest_HeaderAndQueryToken_TheHeaderWins()
    {
        // Reproduction: GET /api/v1/conversations/{X's group}?access_token=<X's token> with "Authorization: Bearer <M's token>"
        // answered 200 as X: the query token replaced the header's.
        var (x, m) = (NewUser("x"), NewUser("m"));
        using var xApi = _factory.Api(x);
        var group = await xApi.CreateGroupAsync("x's");
        using var mApi = _factory.Api(m);

        using var response = await mApi.GetAsync($"/api/v1/conversations/{group.Id}?access_token={ParleyFactory.Token(x)}");

        await ParleyApi.ProblemAsync(response, HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task WebSocket_HeaderAndQueryToken_TheHeaderWins()
    {
        var (x, m) = (NewUser("x"), NewUser("m"));

        var (socket, connected) = await Handshake.ConnectAsync(
            _factory.WebSocketUri($"access_token={ParleyFactory.Token(x)}"),
            o => o.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token(m)));
        await Handshake.CloseAsync(socket);

        Assert.Equal(m, connected.GetProperty("user_id").GetString());
    }

    [Theory]
    [InlineData("string")]
    [InlineData("array")]
    public async Task Token_CarryingTheInternalServiceClaim_IsAnOrdinaryUser(string shape)
    {
        // Reproduction: a signed token with "parley_service": "true" and no configured role claim sent a system message
        // into a group its sub was not in (201) and read that group (200). Only Auth:ServiceRoleClaim grants the role.
        var (owner, mallory) = (NewUser("owner"), NewUser("mallory"));
        using var ownerApi = _factory.Api(owner);
        var group = await ownerApi.CreateGroupAsync("private");
        object claim = shape == "array" ? new[] { "true" } : "true";
        using var api = new ParleyApi(_factory.Anonymous());
        api.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Bearer", Signed(new Dictionary<string, object> { ["sub"] = mallory, ["parley_service"] = claim }));

        using var sent = await api.PostAsync("/api/v1/messages", new { conversation_id = group.Id, content = "I am the system", message_type = "system" });
        using var read = await api.GetAsync($"/api/v1/conversations/{group.Id}");

        await ParleyApi.ProblemAsync(sent, HttpStatusCode.Forbidden, "forbidden");
        await ParleyApi.ProblemAsync(read, HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await ownerApi.ListMessagesAsync(group.Id)).Messages);
    }

    [Fact]
    public async Task WebSocket_WithoutOrWithBadToken_IsRefusedWith401()
    {
        var expired = ParleyFactory.Token("alice", expires: DateTime.UtcNow.AddMinutes(-2));
        var wrongKey = ParleyFactory.Token("alice", key: "another-signing-key-0123456789abcdef-xyz");

        await Handshake.AssertRefusedAsync(_factory.WebSocketUri(), HttpStatusCode.Unauthorized);
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri($"access_token={expired}"), HttpStatusCode.Unauthorized);
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri($"access_token={wrongKey}"), HttpStatusCode.Unauthorized);
        await Handshake.AssertRefusedAsync(
            _factory.WebSocketUri(), HttpStatusCode.Unauthorized, o => o.SetRequestHeader("Authorization", "Bearer " + wrongKey));
    }

    [Fact]
    public async Task ApiKey_Wrong_Returns401Unauthenticated()
    {
        using var client = _factory.Anonymous();
        client.DefaultRequestHeaders.Add("X-Api-Key", "not-the-service-key-0123456789");

        using var response = await client.PostAsync(
            "/api/v1/conversations", new StringContent("""{"type":"group","participant_ids":["alice"]}""", Encoding.UTF8, "application/json"), Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
    }

    [Fact]
    public async Task SystemMessage_FromAUser_Returns403()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(bob);

        using var response = await api.PostAsync(
            "/api/v1/messages", new { conversation_id = conversation.Id, content = "I am the system", message_type = "system" });

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Forbidden, "forbidden");
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task SystemMessage_FromServiceApiKey_Returns201AndReachesTheMembers()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        var conversation = await aliceApi.CreateDirectAsync(bob);
        await using var bobSocket = await WsClient.ConnectAsync(_factory, bob);
        using var service = _factory.ServiceApi();

        using var response = await service.PostAsync(
            "/api/v1/messages", new { conversation_id = conversation.Id, content = "Bob joined", message_type = "system" });

        var message = await ParleyApi.ReadAsync<Message>(response, HttpStatusCode.Created);
        Assert.Equal("system", message.MessageType);
        Assert.Equal("system", message.SenderId);
        var live = await bobSocket.NextAsync("new_message");
        Assert.Equal(message.Id, live.GetProperty("message").GetProperty("id").GetGuid());
        Assert.Equal(message.Id, (await aliceApi.GetMessageAsync(message.Id)).Id);
    }

    [Fact]
    public async Task ServiceApiKey_SeesAndManagesConversationsItIsNotAMemberOf()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var aliceApi = _factory.Api(alice);
        var group = await aliceApi.CreateGroupAsync("g");
        using var service = _factory.ServiceApi();

        var seen = await service.GetConversationAsync(group.Id);
        var after = await AddOkAsync(service, group.Id, bob);
        await RemoveOkAsync(service, group.Id, bob);

        Assert.Equal(group.Id, seen.Id);
        Assert.Equal(new Dictionary<string, string> { [alice] = "owner", [bob] = "member" }, RolesOf(after));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ServiceRoleClaim_InToken_ActsAsTheServiceRole(bool roleAsArray)
    {
        var (backend, alice, bob) = (NewUser("backend"), NewUser("alice"), NewUser("bob"));
        var token = roleAsArray
            ? Signed(new Dictionary<string, object> { ["sub"] = backend, ["role"] = new[] { "reader", "parley-service" } })
            : ParleyFactory.Token(backend, role: "parley-service");
        using var service = new ParleyApi(_factory.Anonymous());
        service.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

        using var created = await CreateAsync(service, new { type = "group", participant_ids = new[] { alice, bob }, owner_id = alice });
        var group = await ParleyApi.ReadAsync<Conversation>(created, HttpStatusCode.Created);
        using var sent = await service.PostAsync("/api/v1/messages", new { conversation_id = group.Id, content = "Welcome", message_type = "system" });

        Assert.Equal(new Dictionary<string, string> { [alice] = "owner", [bob] = "member" }, RolesOf(group));
        var message = await ParleyApi.ReadAsync<Message>(sent, HttpStatusCode.Created);
        Assert.Equal(backend, message.SenderId);
    }

    [Fact]
    public async Task OtherRoleClaim_InToken_IsAnOrdinaryUser()
    {
        var (backend, alice) = (NewUser("backend"), NewUser("alice"));
        using var api = new ParleyApi(_factory.Anonymous());
        api.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ParleyFactory.Token(backend, role: "admin"));

        using var response = await CreateAsync(api, new { type = "group", participant_ids = new[] { alice }, owner_id = alice });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(["owner_id"], problem.ErrorFields);
    }

    private static string Signed(Dictionary<string, object> claims) => Create(claims, new SigningCredentials(
        new SymmetricSecurityKey(Encoding.UTF8.GetBytes(ParleyFactory.SigningKey)), SecurityAlgorithms.HmacSha256));

    private static string Unsigned(Dictionary<string, object> claims) => Create(claims, null);

    private static string Create(Dictionary<string, object> claims, SigningCredentials? credentials)
    {
        var now = DateTime.UtcNow;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Issuer = ParleyFactory.Issuer,
            Audience = ParleyFactory.Audience,
            IssuedAt = now.AddMinutes(-1),
            NotBefore = now.AddMinutes(-1),
            Expires = now.AddHours(1),
            SigningCredentials = credentials,
        });
    }

    /// <summary>The token with its payload's sub replaced and the original signature kept.</summary>
    private static string Tampered(string token, string sub)
    {
        var parts = token.Split('.');
        var payload = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Base64UrlEncoder.Decode(parts[1]))!;
        payload["sub"] = JsonSerializer.SerializeToElement(sub);
        return $"{parts[0]}.{Base64UrlEncoder.Encode(JsonSerializer.Serialize(payload))}.{parts[2]}";
    }
}

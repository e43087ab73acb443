using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>Auth:Mode=Header: a gateway sets X-User-ID and X-Device-ID, exactly as the seed's curl and WebSocket examples send them.</summary>
public sealed class HeaderAuthenticationTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(s => s["Auth:Mode"] = "Header");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task SeedCurlExample_SendMessageWithXUserId_Returns201()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        var conversation = await CreateDirectAsync(alice, bob);
        using var http = _factory.Anonymous();

        // curl -X POST http://localhost:8083/api/v1/messages -H "Content-Type: application/json" -H "X-User-ID: <user-uuid>" -d '{...}'
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/messages")
        {
            Content = new StringContent(
                $$"""
                {
                    "conversation_id": "{{conversation.Id}}",
                    "content": "Hello, World!",
                    "message_type": "text"
                  }
                """,
                Encoding.UTF8,
                "application/json"),
        };
        request.Headers.Add("X-User-ID", alice);
        using var response = await http.SendAsync(request, Ct);

        var message = await ParleyApi.ReadAsync<Message>(response, HttpStatusCode.Created);
        Assert.Equal(alice, message.SenderId);
        Assert.Equal("Hello, World!", message.Content);
        Assert.Equal(conversation.Id, message.ConversationId);
    }

    [Fact]
    public async Task SeedWebSocketExample_XUserIdAndXDeviceIdHeaders_ConnectReceiveAndSendReadReceipt()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        var conversation = await CreateDirectAsync(alice, bob);
        var (socket, connected) = await Handshake.ConnectAsync(_factory.WebSocketUri(), o =>
        {
            o.SetRequestHeader("X-User-ID", bob);
            o.SetRequestHeader("X-Device-ID", "web-1");
        });
        await using var aliceSocket = await ConnectAsync(alice, "phone");
        try
        {
            Assert.Equal(bob, connected.GetProperty("user_id").GetString());
            Assert.Equal("web-1", connected.GetProperty("device_id").GetString());
            Assert.Equal("phone", aliceSocket.Connected.GetProperty("device_id").GetString());

            using var aliceApi = UserApi(alice);
            var sent = await aliceApi.SendTextAsync(conversation.Id, "hi bob");
            var frame = JsonSerializer.Serialize(new { type = "read_receipt", payload = new { message_id = sent.Id } });
            await socket.SendAsync(Encoding.UTF8.GetBytes(frame), WebSocketMessageType.Text, true, Ct).WaitAsync(WsClient.DefaultTimeout, Ct);

            var read = await aliceSocket.NextAsync("message_read", p => p.GetProperty("user_id").GetString() == bob);
            Assert.Equal(sent.Id, read.GetProperty("message_id").GetGuid());
            Assert.Equal(sent.Seq, read.GetProperty("up_to_seq").GetInt64());
        }
        finally
        {
            await Handshake.CloseAsync(socket);
        }
    }

    [Theory]
    [InlineData("10.9.0.0/16", HttpStatusCode.Unauthorized)] // the gateway's network: this test's loopback peer is not in it
    [InlineData("127.0.0.1", HttpStatusCode.OK)]
    public async Task TrustedNetworks_XUserIdIsBelievedOnlyFromThem_OverRestAndTheWebSocket(string network, HttpStatusCode expected)
    {
        await using var factory = new ParleyFactory(s =>
        {
            s["Auth:Mode"] = "Header";
            s["Auth:Header:TrustedNetworks:0"] = "fd00::/8";
            s["Auth:Header:TrustedNetworks:1"] = network;
        });
        factory.StartKestrel();
        using var client = factory.Anonymous();
        client.DefaultRequestHeaders.Add("X-User-ID", NewUser("alice"));

        using var response = await client.GetAsync("/api/v1/conversations", Ct);

        Assert.Equal(expected, response.StatusCode);
        if (expected == HttpStatusCode.OK)
        {
            var (socket, connected) = await Handshake.ConnectAsync(factory.WebSocketUri(), o => o.SetRequestHeader("X-User-ID", "bob"));
            Assert.Equal("bob", connected.GetProperty("user_id").GetString());
            await Handshake.CloseAsync(socket);
            return;
        }

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.Equal("X-User-ID is accepted only from the gateway's addresses (Auth:Header:TrustedNetworks).", problem.Detail);
        await Handshake.AssertRefusedAsync(factory.WebSocketUri(), HttpStatusCode.Unauthorized, o => o.SetRequestHeader("X-User-ID", "bob"));
    }

    [Fact]
    public void TrustedNetworks_AnEntryThatIsNotANetwork_IsRefusedAtStart()
    {
        var environment = new Microsoft.Extensions.Hosting.Internal.HostingEnvironment { EnvironmentName = "Production" };
        var options = new Parley.Server.Hosting.Auth.AuthOptions { Mode = Parley.Server.Hosting.Auth.AuthMode.Header };
        options.Header.TrustedNetworks.AddRange(["10.0.0.0/8", "gateway"]);

        var result = new Parley.Server.Hosting.Auth.AuthOptionsValidator(environment).Validate(null, options);

        Assert.Equal(
            ["Auth:Header:TrustedNetworks:1 is 'gateway'; expected a network in CIDR notation (10.1.0.0/16, fd00::/8) or a single address."],
            result.Failures);
    }

    [Fact]
    public async Task XUserId_TheServicesSenderId_Returns401()
    {
        using var client = _factory.Anonymous();
        client.DefaultRequestHeaders.Add("X-User-ID", "system");

        using var response = await client.GetAsync("/api/v1/conversations", TestContext.Current.CancellationToken);

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        Assert.Contains("reserved", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task XUserId_IsTheCaller()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));

        var conversation = await CreateDirectAsync(alice, bob);

        Assert.Equal(alice, conversation.CreatedBy);
        using var bobApi = UserApi(bob);
        Assert.Equal([conversation.Id], (await bobApi.ListConversationsAsync()).Conversations.Select(c => c.Id));
    }

    [Theory]
    [InlineData("alice smith")]
    [InlineData(" ")]
    [InlineData("tab\tinside")]
    public async Task XUserId_Malformed_Returns401(string userId)
    {
        using var http = _factory.Anonymous();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/conversations");
        Assert.True(request.Headers.TryAddWithoutValidation("X-User-ID", userId));

        using var response = await http.SendAsync(request, Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
    }

    [Theory]
    [InlineData("X-User-ID")]
    [InlineData("X-Device-ID")]
    public async Task HeaderGivenTwice_Returns401_NotAUserJoinedByAComma(string header)
    {
        // Two header lines, as a gateway that appends instead of replacing sends them (HttpClient would join the values
        // into one line): written on the socket.
        var address = _factory.BaseAddress;
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port, Ct);
        var stream = tcp.GetStream();
        var head = $"GET /api/v1/conversations HTTP/1.1\r\nHost: {address.Authority}\r\nX-User-ID: alice\r\n{header}: bob\r\n" +
            (header == "X-Device-ID" ? "X-Device-ID: carol\r\n" : "") + "Connection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), Ct);

        using var reader = new StreamReader(stream);
        var response = await reader.ReadToEndAsync(Ct);

        Assert.StartsWith("HTTP/1.1 401", response, StringComparison.Ordinal);
        Assert.Contains("at most once", response, StringComparison.Ordinal);
    }

    [Fact]
    public async Task XUserId_TooLong_Returns401()
    {
        using var ok = UserApi(new string('a', 128));
        using var tooLong = UserApi(new string('a', 129));

        using var accepted = await ok.GetAsync("/api/v1/conversations");
        using var rejected = await tooLong.GetAsync("/api/v1/conversations");

        Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
        await ParleyApi.ProblemAsync(rejected, HttpStatusCode.Unauthorized, "unauthenticated");
    }

    [Fact]
    public async Task XUserId_Missing_Returns401()
    {
        using var http = _factory.Anonymous();

        using var response = await http.GetAsync("/api/v1/conversations", Ct);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized, "unauthenticated");
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri(), HttpStatusCode.Unauthorized);
        await Handshake.AssertRefusedAsync(_factory.WebSocketUri(), HttpStatusCode.Unauthorized, o => o.SetRequestHeader("X-User-ID", "bad id"));
    }

    [Fact]
    public async Task ServiceApiKey_WorksInHeaderMode()
    {
        var (alice, bob) = (NewUser("alice"), NewUser("bob"));
        using var service = _factory.ServiceApi();

        using var response = await CreateAsync(service, new { type = "group", participant_ids = new[] { alice, bob }, owner_id = bob });

        var group = await ParleyApi.ReadAsync<Conversation>(response, HttpStatusCode.Created);
        Assert.Equal("owner", RolesOf(group)[bob]);
    }

    private ParleyApi UserApi(string userId)
    {
        var http = _factory.Anonymous();
        http.DefaultRequestHeaders.Add("X-User-ID", userId);
        return new ParleyApi(http);
    }

    private async Task<Conversation> CreateDirectAsync(string userId, string otherUserId)
    {
        using var api = UserApi(userId);
        return await api.CreateDirectAsync(otherUserId);
    }

    /// <summary>A <see cref="WsClient"/> with the gateway's headers (in Header mode its bearer token is ignored).</summary>
    private Task<WsClient> ConnectAsync(string userId, string deviceId) =>
        WsClient.ConnectAsync(_factory, userId, configure: o =>
        {
            o.SetRequestHeader("X-User-ID", userId);
            o.SetRequestHeader("X-Device-ID", deviceId);
        });
}

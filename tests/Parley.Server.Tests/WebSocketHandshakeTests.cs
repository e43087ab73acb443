using System.Net;
using System.Net.WebSockets;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Opening /ws: authentication, device identity, subprotocol negotiation and the <c>connected</c> frame.</summary>
public sealed class WebSocketHandshakeTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(settings => settings["Realtime:HeartbeatInterval"] = "00:00:17");

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Connect_WithBearerToken_FirstFrameIsConnectedWithConnectionUserDeviceAndHeartbeat()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice", deviceId: "alice-phone");

        // WsClient asserts that the first frame is "connected"; here its payload.
        var connected = client.Connected;
        Assert.False(string.IsNullOrWhiteSpace(connected.GetProperty("connection_id").GetString()));
        Assert.Equal("alice", connected.GetProperty("user_id").GetString());
        Assert.Equal("alice-phone", connected.GetProperty("device_id").GetString());
        Assert.Equal(17_000, connected.GetProperty("heartbeat_interval_ms").GetInt64());
    }

    [Fact]
    public async Task Connect_TwoSockets_GetDistinctConnectionIds()
    {
        await using var first = await WsClient.ConnectAsync(_factory, "alice", deviceId: "same-device");
        await using var second = await WsClient.ConnectAsync(_factory, "alice", deviceId: "same-device");

        Assert.NotEqual(first.Connected.GetProperty("connection_id").GetString(), second.Connected.GetProperty("connection_id").GetString());
    }

    [Fact]
    public async Task Connect_DeviceIdInXDeviceIdHeader_IsTheDeviceId()
    {
        await using var client = await WsClient.ConnectAsync(
            _factory, "alice", configure: options => options.SetRequestHeader("X-Device-ID", "header-device"));

        Assert.Equal("header-device", client.Connected.GetProperty("device_id").GetString());
    }

    [Fact]
    public async Task Connect_DeviceIdInQuery_IsTheDeviceId()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice", query: "device_id=query-device");

        Assert.Equal("query-device", client.Connected.GetProperty("device_id").GetString());
    }

    [Theory]
    [InlineData("has%20space")]
    [InlineData("tab%09tab")]
    public async Task Connect_MalformedDeviceId_Returns400WithoutUpgrade(string deviceId)
    {
        using var raw = await RawSocket.ConnectAsync(
            _factory, query: "device_id=" + deviceId, configure: o => o.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("alice")));

        Assert.False(raw.Upgraded);
        Assert.Equal(HttpStatusCode.BadRequest, raw.Status);
    }

    [Fact]
    public async Task Connect_NoDeviceId_GeneratesOnePerConnection()
    {
        await using var first = await WsClient.ConnectAsync(_factory, "alice");
        await using var second = await WsClient.ConnectAsync(_factory, "alice");

        var firstDevice = first.Connected.GetProperty("device_id").GetString();
        var secondDevice = second.Connected.GetProperty("device_id").GetString();
        Assert.False(string.IsNullOrWhiteSpace(firstDevice));
        Assert.False(string.IsNullOrWhiteSpace(secondDevice));
        Assert.NotEqual(firstDevice, secondDevice);
    }

    [Fact]
    public async Task Connect_SubprotocolParleyV1_IsAcceptedAndEchoed()
    {
        await using var client = await WsClient.ConnectAsync(
            _factory, "alice", configure: options => options.AddSubProtocol("parley.v1"));

        Assert.Equal("parley.v1", client.Socket.SubProtocol);
        Assert.Equal("alice", client.Connected.GetProperty("user_id").GetString());
    }

    [Fact]
    public async Task Connect_UnknownAndParleyV1Offered_ParleyV1IsChosen()
    {
        await using var client = await WsClient.ConnectAsync(
            _factory, "alice", configure: options =>
            {
                options.AddSubProtocol("parley.v9");
                options.AddSubProtocol("parley.v1");
            });

        Assert.Equal("parley.v1", client.Socket.SubProtocol);
    }

    [Fact]
    public async Task Connect_NoSubprotocol_IsAcceptedWithoutOne()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");

        Assert.True(string.IsNullOrEmpty(client.Socket.SubProtocol));
    }

    [Fact]
    public async Task Connect_OnlyUnknownSubprotocols_Returns400WithoutUpgrade()
    {
        using var raw = await RawSocket.ConnectAsync(_factory, configure: options =>
        {
            options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("alice"));
            options.AddSubProtocol("mqtt");
            options.AddSubProtocol("parley.v2");
        });

        Assert.False(raw.Upgraded);
        Assert.Equal(HttpStatusCode.BadRequest, raw.Status);
    }

    [Fact]
    public async Task Connect_NoToken_Returns401WithoutUpgrade()
    {
        using var raw = await RawSocket.ConnectAsync(_factory);

        Assert.False(raw.Upgraded);
        Assert.Equal(HttpStatusCode.Unauthorized, raw.Status);
    }

    [Fact]
    public async Task Connect_InvalidToken_Returns401WithoutUpgrade()
    {
        using var raw = await RawSocket.ConnectAsync(_factory, configure: options =>
            options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("alice", key: "another-key-that-the-server-does-not-trust-0123")));

        Assert.False(raw.Upgraded);
        Assert.Equal(HttpStatusCode.Unauthorized, raw.Status);
    }

    [Fact]
    public async Task Connect_TokenInAccessTokenQuery_IsAuthenticated()
    {
        var token = ParleyFactory.Token("browser-user", deviceId: "tab-1");
        using var raw = await RawSocket.ConnectAsync(_factory, query: "access_token=" + Uri.EscapeDataString(token));

        Assert.True(raw.Upgraded, $"not upgraded: {raw.Status} {raw.Failure?.Message}");
        var first = await raw.ReceiveFrameAsync();
        Assert.Equal("connected", first.GetProperty("type").GetString());
        Assert.Equal("browser-user", first.GetProperty("payload").GetProperty("user_id").GetString());
        Assert.Equal("tab-1", first.GetProperty("payload").GetProperty("device_id").GetString());
    }

    [Fact]
    public async Task Get_WithoutUpgrade_Returns400ProblemDetails()
    {
        using var api = _factory.Api("alice");

        var response = await api.GetAsync("/ws");

        await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
    }

    [Fact]
    public async Task Get_WithoutUpgradeOrToken_Returns401ProblemDetails()
    {
        using var http = _factory.Anonymous();

        var response = await http.GetAsync("/ws", TestContext.Current.CancellationToken);

        await ParleyApi.ProblemAsync(response, HttpStatusCode.Unauthorized);
        Assert.Contains(response.Headers.WwwAuthenticate, h => h.Scheme == "Bearer");
    }

    [Fact]
    public async Task Connect_AsAlice_SocketIsAlicesOnly()
    {
        // The user id comes from the token, never from anything the client can add to the handshake.
        await using var client = await WsClient.ConnectAsync(
            _factory, "alice", query: "user_id=mallory", configure: options => options.SetRequestHeader("X-User-ID", "mallory"));

        Assert.Equal("alice", client.Connected.GetProperty("user_id").GetString());
        Assert.Equal(WebSocketState.Open, client.Socket.State);
    }
}

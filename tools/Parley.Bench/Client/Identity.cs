using System.Text;
using Parley.Client;
using Parley.Bench.Options;

namespace Parley.Bench.Client;

/// <summary>One benchmark user: its id, the server it talks to, and the credential it presents.</summary>
internal sealed class Identity
{
    public Identity(string userId, string deviceId, Uri server, string? token)
    {
        UserId = userId;
        UserIdUtf8 = Encoding.UTF8.GetBytes(userId);
        DeviceId = deviceId;
        Server = server;
        Token = token;
        Authorization = token is null ? null : "Bearer " + token;
        MessagesUri = new Uri(server, "api/v1/messages");
    }

    /// <summary><c>POST /api/v1/messages</c> on this user's server.</summary>
    public Uri MessagesUri { get; }

    public string UserId { get; }

    /// <summary>For comparing a frame's <c>sender_id</c> without decoding it.</summary>
    public byte[] UserIdUtf8 { get; }

    public string DeviceId { get; }

    public Uri Server { get; }

    public string? Token { get; }

    /// <summary>The Authorization header's value (jwt), built once.</summary>
    public string? Authorization { get; }

    public ParleyCredentials Credentials => Token is null ? ParleyCredentials.Headers(UserId, DeviceId) : ParleyCredentials.Bearer(Token);

    public void Apply(System.Net.Http.Headers.HttpRequestHeaders headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (Authorization is not null)
        {
            headers.TryAddWithoutValidation("Authorization", Authorization);
        }
        else
        {
            headers.TryAddWithoutValidation("X-User-ID", UserId);
            headers.TryAddWithoutValidation("X-Device-ID", DeviceId);
        }
    }

    public void Apply(System.Net.WebSockets.ClientWebSocketOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (Authorization is not null)
        {
            options.SetRequestHeader("Authorization", Authorization);
        }
        else
        {
            options.SetRequestHeader("X-User-ID", UserId);
            options.SetRequestHeader("X-Device-ID", DeviceId);
        }
    }
}

/// <summary>Makes the run's identities: user ids under the run's prefix, spread round-robin over the servers.</summary>
internal sealed class Identities(BenchOptions options)
{
    private readonly JwtMinter? _minter = options.Auth == AuthKind.Jwt
        ? new JwtMinter(options.TokenKey!, options.TokenIssuer, options.TokenAudience)
        : null;

    /// <summary>
    /// User number <paramref name="index"/> of the run (global across processes), named <c>{run}-{kind}{index}</c>, on
    /// the server of its number, or of its <paramref name="conversation"/>'s number with <see cref="Placement.Conversations"/>.
    /// </summary>
    public Identity Create(string kind, int index, int? conversation = null)
    {
        var userId = $"{options.RunId}-{kind}{index}";
        var deviceId = "bench";
        var placed = options.Placement == Placement.Conversations && conversation is { } c ? c : index;
        var server = options.Urls[placed % options.Urls.Count];
        return new Identity(userId, deviceId, server, _minter?.Mint(userId, deviceId));
    }
}

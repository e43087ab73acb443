namespace Parley.Client;

/// <summary>
/// How the client authenticates (docs/authentication.md): a bearer token from a provider, a service API key,
/// or the trusted headers of <c>Auth:Mode=Header</c> deployments.
/// </summary>
public sealed class ParleyCredentials
{
    private readonly Func<CancellationToken, ValueTask<string>>? _tokenProvider;
    private readonly string? _apiKey;
    private readonly string? _userId;
    private readonly string? _deviceId;

    private ParleyCredentials(Func<CancellationToken, ValueTask<string>>? tokenProvider, string? apiKey, string? userId, string? deviceId)
    {
        _tokenProvider = tokenProvider;
        _apiKey = apiKey;
        _userId = userId;
        _deviceId = deviceId;
    }

    /// <summary>
    /// A bearer token (JWT) from <paramref name="tokenProvider"/>. It is called before every request and every
    /// connection attempt, so it should cache its token and return a fresh one once the old one expires; after
    /// the server closes a socket because its token expired (4003), the next connection asks it again.
    /// </summary>
    public static ParleyCredentials Bearer(Func<CancellationToken, ValueTask<string>> tokenProvider)
    {
        ArgumentNullException.ThrowIfNull(tokenProvider);
        return new ParleyCredentials(tokenProvider, null, null, null);
    }

    /// <summary>A fixed bearer token.</summary>
    public static ParleyCredentials Bearer(string token)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        return new ParleyCredentials(_ => ValueTask.FromResult(token), null, null, null);
    }

    /// <summary>The service role with an API key (<c>X-Api-Key</c>), for an application's back end.</summary>
    public static ParleyCredentials ApiKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        return new ParleyCredentials(null, key, null, null);
    }

    /// <summary>
    /// <c>X-User-ID</c> (and <c>X-Device-ID</c>) for a deployment with <c>Auth:Mode=Header</c> behind a gateway
    /// that authenticates users itself.
    /// </summary>
    public static ParleyCredentials Headers(string userId, string? deviceId = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        return new ParleyCredentials(null, null, userId, deviceId);
    }

    /// <summary>Whether these credentials are a bearer token (which browsers must pass as <c>access_token</c> on the socket).</summary>
    internal bool IsBearer => _tokenProvider is not null;

    /// <summary>The headers to send with one request or connection attempt.</summary>
    internal async ValueTask<IReadOnlyList<KeyValuePair<string, string>>> GetHeadersAsync(CancellationToken cancellationToken)
    {
        if (_tokenProvider is not null)
        {
            var token = await _tokenProvider(cancellationToken);
            return [new("Authorization", "Bearer " + token)];
        }

        if (_apiKey is not null)
        {
            return [new("X-Api-Key", _apiKey)];
        }

        return _deviceId is null
            ? [new("X-User-ID", _userId!)]
            : [new("X-User-ID", _userId!), new("X-Device-ID", _deviceId)];
    }
}

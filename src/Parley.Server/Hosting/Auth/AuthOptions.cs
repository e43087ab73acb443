namespace Parley.Server.Hosting.Auth;

internal enum AuthMode
{
    /// <summary>Bearer tokens (HS256 key or an OpenID Connect authority); the user id is <c>sub</c>.</summary>
    Jwt,

    /// <summary>Trust <c>X-User-ID</c> / <c>X-Device-ID</c> set by an API gateway in front of Parley.</summary>
    Header,
}

internal sealed class AuthOptions
{
    public const string SectionName = "Auth";

    public AuthMode Mode { get; set; } = AuthMode.Jwt;

    public JwtSettings Jwt { get; set; } = new();

    public HeaderSettings Header { get; set; } = new();

    /// <summary>API keys of the application's back end (sent as <c>X-Api-Key</c>); each grants the service role.</summary>
    public List<string> ServiceApiKeys { get; set; } = [];

    /// <summary>Claim that carries roles in tokens (a string or an array).</summary>
    public string ServiceRoleClaim { get; set; } = "role";

    /// <summary>Role value that grants the service role to a token.</summary>
    public string ServiceRole { get; set; } = "parley-service";

    /// <summary>Sender id of messages sent with an API key (<c>system</c> messages).</summary>
    public string ServiceUserId { get; set; } = "system";
}

internal sealed class JwtSettings
{
    /// <summary>HS256 signing key, at least 32 bytes of UTF-8.</summary>
    public string? SigningKey { get; set; }

    /// <summary>OpenID Connect authority whose discovery document and keys validate tokens.</summary>
    public string? Authority { get; set; }

    public string? Issuer { get; set; }

    public string? Audience { get; set; }

    public bool RequireHttpsMetadata { get; set; } = true;

    /// <summary>Allowed clock difference between Parley and the token issuer.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
}

internal sealed class HeaderSettings
{
    /// <summary>
    /// With <c>Auth:Mode=Header</c>, the networks of the gateway (CIDR or single addresses): <c>X-User-ID</c> is believed
    /// only from a peer in one of them. Empty: from any peer (a warning at start outside Development).
    /// </summary>
    public List<string> TrustedNetworks { get; set; } = [];
}

/// <summary>The key used when nothing is configured and the environment is Development (documented in docs/authentication.md).</summary>
internal static class DevelopmentJwt
{
    public const string SigningKey = "parley-development-signing-key-not-for-production-use";
    public const string Issuer = "parley-dev";
    public const string Audience = "parley";
}

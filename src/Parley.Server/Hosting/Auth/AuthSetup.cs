using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Microsoft.Net.Http.Headers;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting.Auth;

internal static partial class AuthSetup
{
    public const string PolicyScheme = "Parley";

    /// <summary>The WebSocket URL's token parameter (never logged: see LogRedaction).</summary>
    public const string QueryTokenParameter = "access_token";

    public static IHostApplicationBuilder AddParleyAuth(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.SectionName).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<AuthOptions>, AuthOptionsValidator>();
        builder.Services.AddSingleton<JwtKeys>();

        builder.Services.AddAuthentication(PolicyScheme)
            .AddPolicyScheme(PolicyScheme, PolicyScheme, options =>
            {
                options.ForwardDefaultSelector = context =>
                {
                    if (context.Request.Headers.ContainsKey(ApiKeyAuthenticationHandler.HeaderName))
                    {
                        return ApiKeyAuthenticationHandler.SchemeName;
                    }

                    var mode = context.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.Mode;
                    return mode == AuthMode.Header ? HeaderAuthenticationHandler.SchemeName : JwtBearerDefaults.AuthenticationScheme;
                };
            })
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null)
            .AddScheme<AuthenticationSchemeOptions, HeaderAuthenticationHandler>(HeaderAuthenticationHandler.SchemeName, null)
            .AddJwtBearer();

        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>, JwtKeys>((jwt, auth, keys) => ConfigureJwt(jwt, auth.Value, keys));

        builder.Services.AddSingleton<TrustedGateways>();
        builder.Services.AddAuthorization();
        return builder;
    }

    /// <summary>
    /// Warns once started where authentication guards nothing: Header mode believing <c>X-User-ID</c> from anyone outside
    /// Development (safe only if no client can reach Parley except through the gateway, which nothing here can check), and
    /// the documented development key on an address other machines can reach (anyone can mint any user's token).
    /// </summary>
    public static void WarnIfUnguarded(IServiceProvider services, IHostEnvironment environment, ILogger logger)
    {
        var mode = services.GetRequiredService<IOptions<AuthOptions>>().Value.Mode;
        if (mode == AuthMode.Header && !environment.IsDevelopment() && services.GetRequiredService<TrustedGateways>().TrustsAnyone)
        {
            Log.HeadersTrustedFromAnyone(logger);
        }

        var addresses = services.GetService<Microsoft.AspNetCore.Hosting.Server.IServer>()?.Features
            .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses ?? [];
        var reachable = addresses.Where(a => !IsLoopback(a)).ToList();
        if (mode == AuthMode.Jwt && services.GetRequiredService<JwtKeys>().IsDevelopmentKey && reachable.Count > 0)
        {
            Log.DevelopmentKeyReachable(logger, string.Join(", ", reachable));
        }
    }

    /// <summary>Whether a listening address (<c>http://127.0.0.1:5000</c>, <c>http://[::]:80</c>, <c>http://+:80</c>) is this machine's only.</summary>
    private static bool IsLoopback(string address)
    {
        var binding = BindingAddress.Parse(address);
        return binding.IsUnixPipe || binding.IsNamedPipe // this machine only
            || binding.Host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || (System.Net.IPAddress.TryParse(binding.Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1110, Level = LogLevel.Warning, Message = "Auth:Mode is Header and Auth:Header:TrustedNetworks is empty: any client that reaches Parley directly can act as any user by sending X-User-ID. Set the gateway's networks, or make sure nothing but the gateway can reach Parley")]
        public static partial void HeadersTrustedFromAnyone(ILogger logger);

        [LoggerMessage(EventId = 1111, Level = LogLevel.Warning, Message = "The documented development signing key is in use on {Addresses}, which other machines can reach: anyone there can mint a token for any user. Set Auth:Jwt:SigningKey or Auth:Jwt:Authority, or listen on loopback only")]
        public static partial void DevelopmentKeyReachable(ILogger logger, string addresses);
    }

    /// <summary>
    /// The service role's sender id belongs to the service: a user with that id could otherwise pass for it
    /// (its system messages would count as the user's own, and share the user's client_message_ids).
    /// </summary>
    public static string ReservedUserId(AuthOptions auth) =>
        $"The user id '{auth.ServiceUserId}' is reserved for the service role (Auth:ServiceUserId).";

    private static void ConfigureJwt(JwtBearerOptions jwt, AuthOptions auth, JwtKeys keys)
    {
        // Keep claim names as issued: the user id is "sub", not a mapped XML-namespace claim type.
        jwt.MapInboundClaims = false;
        var settings = auth.Jwt;
        if (!string.IsNullOrWhiteSpace(settings.Authority))
        {
            jwt.Authority = settings.Authority;
            jwt.RequireHttpsMetadata = settings.RequireHttpsMetadata;
        }

        jwt.TokenValidationParameters = new TokenValidationParameters
        {
            NameClaimType = Caller.UserIdClaim,
            RoleClaimType = auth.ServiceRoleClaim,
            // With an authority and no issuer of its own, the discovery document's issuer (an identity provider may sign
            // several realms or tenants with the same keys: a token of another one must not pass).
            ValidateIssuer = keys.Issuer is not null || !string.IsNullOrWhiteSpace(settings.Authority),
            ValidIssuer = keys.Issuer,
            ValidateAudience = keys.Audience is not null,
            ValidAudience = keys.Audience,
            ValidateLifetime = true,
            RequireExpirationTime = true,
            ClockSkew = settings.ClockSkew,
            ValidateIssuerSigningKey = keys.SigningKey is not null,
            IssuerSigningKey = keys.SigningKey,
            ValidAlgorithms = keys.SigningKey is null ? null : [SecurityAlgorithms.HmacSha256],
        };

        jwt.Events = new JwtBearerEvents
        {
            // Browsers cannot set headers on a WebSocket handshake: there, and only there, the token may come as
            // ?access_token=. REST ignores it (a URL token ends up in proxies' logs and browser history), and a request
            // that has an Authorization header is authenticated by that header alone: a second credential in the URL
            // must not override the one the client chose to send.
            OnMessageReceived = context =>
            {
                var request = context.Request;
                if (request.Path.Equals(FrameTypes.WebSocketPath, StringComparison.OrdinalIgnoreCase)
                    && !request.Headers.ContainsKey(HeaderNames.Authorization)
                    && request.Query.TryGetValue(QueryTokenParameter, out var token))
                {
                    context.Token = token.ToString();
                }

                return Task.CompletedTask;
            },
            OnTokenValidated = context =>
            {
                var principal = context.Principal!;
                var sub = principal.FindFirst(Caller.UserIdClaim)?.Value;
                if (!Identifiers.IsValidUserId(sub))
                {
                    context.Fail("The token's sub claim is missing or is not a well-formed user id.");
                    return Task.CompletedTask;
                }

                var isService = principal.HasClaim(auth.ServiceRoleClaim, auth.ServiceRole);
                if (!isService && sub == auth.ServiceUserId)
                {
                    context.Fail(ReservedUserId(auth));
                    return Task.CompletedTask;
                }

                // Caller.ServiceClaim is Parley's own marker: a token that carries a claim of that name (whoever
                // signed it) must not make itself the service. Only the configured role claim, read above, grants it.
                Caller.RemoveServiceMarker(principal);
                if (isService && principal.Identity is System.Security.Claims.ClaimsIdentity identity)
                {
                    identity.AddClaim(Caller.ServiceMarker());
                }

                return Task.CompletedTask;
            },
            OnChallenge = async context =>
            {
                context.HandleResponse();
                if (context.AuthenticateFailure is not null)
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
                }
                else
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                }

                await AuthProblems.WriteChallengeAsync(
                    context.HttpContext,
                    context.AuthenticateFailure is null
                        ? "Send a bearer token in the Authorization header (or access_token on the WebSocket URL)."
                        : "The bearer token is not valid: " + context.AuthenticateFailure.Message);
            },
        };
    }
}

/// <summary>The effective HS256 key, issuer and audience: configured ones, or the documented development key.</summary>
internal sealed class JwtKeys
{
    public JwtKeys(IOptions<AuthOptions> options, IHostEnvironment environment)
    {
        var settings = options.Value.Jwt;
        // An empty value (e.g. Auth__Jwt__Audience= in an environment file) means "not configured", not "must be empty".
        Issuer = string.IsNullOrWhiteSpace(settings.Issuer) ? null : settings.Issuer;
        Audience = string.IsNullOrWhiteSpace(settings.Audience) ? null : settings.Audience;
        var key = settings.SigningKey;
        if (string.IsNullOrEmpty(key) && string.IsNullOrWhiteSpace(settings.Authority) && environment.IsDevelopment())
        {
            key = DevelopmentJwt.SigningKey;
            Issuer ??= DevelopmentJwt.Issuer;
            Audience ??= DevelopmentJwt.Audience;
            IsDevelopmentKey = true;
        }

        SigningKey = string.IsNullOrEmpty(key) ? null : new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key));
    }

    public SymmetricSecurityKey? SigningKey { get; }

    public string? Issuer { get; }

    public string? Audience { get; }

    public bool IsDevelopmentKey { get; }

    /// <summary>A token signed with <see cref="SigningKey"/>, carrying the issuer and audience (the <c>token</c> command, the web app's development sign-in).</summary>
    public string CreateToken(IDictionary<string, object> claims, DateTime now, TimeSpan lifetime) =>
        new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Issuer = Issuer,
            Audience = Audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + lifetime,
            SigningCredentials = new SigningCredentials(
                SigningKey ?? throw new InvalidOperationException("No signing key is configured."), SecurityAlgorithms.HmacSha256),
        });
}

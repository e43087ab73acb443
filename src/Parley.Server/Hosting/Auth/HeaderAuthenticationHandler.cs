using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Parley.Server.Hosting.Auth;

/// <summary>
/// <c>Auth:Mode=Header</c>: an API gateway in front of Parley has authenticated the user and sets
/// <c>X-User-ID</c> (and optionally <c>X-Device-ID</c>). Only safe when clients cannot reach Parley directly.
/// </summary>
internal sealed class HeaderAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, IOptions<AuthOptions> authOptions,
    TrustedGateways gateways)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "Header";
    public const string UserIdHeader = "X-User-ID";
    public const string DeviceIdHeader = "X-Device-ID";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var userIds = Request.Headers[UserIdHeader];
        if (userIds.Count > 1 || Request.Headers[DeviceIdHeader].Count > 1)
        {
            // Two lines would be read as one id joined by a comma ("alice,bob"): a gateway that appends instead of replacing.
            return Task.FromResult(AuthenticateResult.Fail("X-User-ID and X-Device-ID must each be given at most once."));
        }

        var userId = userIds.ToString();
        if (string.IsNullOrEmpty(userId))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (!gateways.Trusts(Context.Connection.RemoteIpAddress))
        {
            return Task.FromResult(AuthenticateResult.Fail("X-User-ID is accepted only from the gateway's addresses (Auth:Header:TrustedNetworks)."));
        }

        if (!Identifiers.IsValidUserId(userId))
        {
            return Task.FromResult(AuthenticateResult.Fail($"X-User-ID is not a well-formed user id ({Identifiers.Shape})."));
        }

        if (userId == authOptions.Value.ServiceUserId)
        {
            return Task.FromResult(AuthenticateResult.Fail(AuthSetup.ReservedUserId(authOptions.Value)));
        }

        var deviceId = Request.Headers[DeviceIdHeader].ToString();
        var claims = new List<Claim> { new(Caller.UserIdClaim, userId) };
        if (!string.IsNullOrEmpty(deviceId))
        {
            claims.Add(new Claim(Caller.DeviceIdClaim, deviceId));
        }

        var identity = new ClaimsIdentity(claims, SchemeName, Caller.UserIdClaim, "role");
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        // The authentication middleware keeps only successful results: ask again (cached) for the failure's reason.
        var result = await HandleAuthenticateOnceSafeAsync();
        await AuthProblems.WriteChallengeAsync(Context, result.Failure?.Message ?? "Send the user id in the X-User-ID header.");
    }
}

/// <summary>The peers whose <c>X-User-ID</c> is believed (<see cref="HeaderSettings.TrustedNetworks"/>; any when none is configured).</summary>
internal sealed class TrustedGateways(IOptions<AuthOptions> options)
{
    private readonly Observability.NetworkAllowList? _networks =
        options.Value.Header.TrustedNetworks.Count > 0 ? new Observability.NetworkAllowList(options.Value.Header.TrustedNetworks) : null;

    /// <summary>Whether any peer is trusted (no networks configured).</summary>
    public bool TrustsAnyone => _networks is null;

    public bool Trusts(System.Net.IPAddress? peer) => _networks?.Allows(peer) ?? true;
}

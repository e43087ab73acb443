using System.Reflection;
using System.Security.Claims;

namespace Parley.Server.Hosting.Auth;

/// <summary>The authenticated party of a request or socket: a user (possibly on a known device) or the application's back end.</summary>
internal sealed record Caller(string UserId, string? DeviceId, bool IsService)
{
    public const string DeviceIdClaim = "device_id";
    public const string UserIdClaim = "sub";

    /// <summary>
    /// Parley's internal marker of the service role, set only by the API-key handler and by token validation when the
    /// configured role claim grants the role. Never taken from a caller: token validation removes any claim of this name
    /// a token carries, and the marker must also have Parley's own issuer.
    /// </summary>
    public const string ServiceClaim = "parley_service";
    private const string MarkerIssuer = "parley:internal";

    /// <summary>Minimal API binding: endpoints declare a <see cref="Caller"/> parameter.</summary>
    public static ValueTask<Caller?> BindAsync(HttpContext context, ParameterInfo parameter) =>
        ValueTask.FromResult(From(context));

    public static Caller? From(HttpContext context)
    {
        var principal = context.User;
        var userId = principal.FindFirstValue(UserIdClaim);
        if (principal.Identity?.IsAuthenticated != true || userId is null)
        {
            return null;
        }

        return new Caller(userId, ResolveDeviceId(context, principal), principal.HasClaim(IsServiceMarker));
    }

    public static Claim ServiceMarker() => new(ServiceClaim, "true", ClaimValueTypes.String, MarkerIssuer);

    /// <summary>Removes every claim named like the marker (a token may carry one; it grants nothing).</summary>
    public static void RemoveServiceMarker(ClaimsPrincipal principal)
    {
        foreach (var identity in principal.Identities)
        {
            foreach (var claim in identity.FindAll(ServiceClaim).ToList())
            {
                identity.TryRemoveClaim(claim);
            }
        }
    }

    private static bool IsServiceMarker(Claim claim) =>
        claim.Type == ServiceClaim && claim.Value == "true" && claim.Issuer == MarkerIssuer;

    /// <summary>Device identity: the token's <c>device_id</c> claim, else <c>X-Device-ID</c>, else the <c>device_id</c> query parameter.</summary>
    private static string? ResolveDeviceId(HttpContext context, ClaimsPrincipal principal)
    {
        var value = principal.FindFirstValue(DeviceIdClaim);
        if (string.IsNullOrEmpty(value))
        {
            value = context.Request.Headers[HeaderAuthenticationHandler.DeviceIdHeader].ToString();
        }

        if (string.IsNullOrEmpty(value))
        {
            value = context.Request.Query["device_id"].ToString();
        }

        return string.IsNullOrEmpty(value) ? null : value;
    }
}

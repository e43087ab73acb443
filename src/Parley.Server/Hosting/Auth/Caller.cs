using System.Reflection;
using System.Security.Claims;

namespace Parley.Server.Hosting.Auth;

/// <summary>The authenticated party of a request or socket: a user (possibly on a known device) or the application's back end.</summary>
internal sealed record Caller(string UserId, string? DeviceId, bool IsService)
{
    public const string DeviceIdClaim = "device_id";
    public const string ServiceClaim = "parley_service";
    public const string UserIdClaim = "sub";

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

        return new Caller(userId, ResolveDeviceId(context, principal), principal.HasClaim(ServiceClaim, "true"));
    }

    /// <summary>Device identity: the token's <c>device_id</c> claim, else <c>X-Device-ID</c>, else the <c>device_id</c> query parameter.</summary>
    private static string? ResolveDeviceId(HttpContext context, ClaimsPrincipal principal)
    {
        var value = principal.FindFirstValue(DeviceIdClaim);
        if (string.IsNullOrEmpty(value))
        {
            value = context.Request.Headers["X-Device-ID"].ToString();
        }

        if (string.IsNullOrEmpty(value))
        {
            value = context.Request.Query["device_id"].ToString();
        }

        return string.IsNullOrEmpty(value) ? null : value;
    }
}

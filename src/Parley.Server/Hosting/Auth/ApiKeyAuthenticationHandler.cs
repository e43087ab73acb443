using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Parley.Server.Hosting.Auth;

/// <summary>The application's back end authenticates with <c>X-Api-Key</c> and acts with the service role.</summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IOptions<AuthOptions> authOptions)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string HeaderName = "X-Api-Key";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = Request.Headers[HeaderName].ToString();
        if (string.IsNullOrEmpty(presented))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        // Compare digests in constant time so response timing does not reveal a key prefix.
        var presentedHash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        var matches = false;
        foreach (var key in authOptions.Value.ServiceApiKeys)
        {
            matches |= CryptographicOperations.FixedTimeEquals(presentedHash, SHA256.HashData(Encoding.UTF8.GetBytes(key)));
        }

        if (!matches)
        {
            return Task.FromResult(AuthenticateResult.Fail("The API key is not valid."));
        }

        var identity = new ClaimsIdentity(
            [new Claim(Caller.UserIdClaim, authOptions.Value.ServiceUserId), Caller.ServiceMarker()],
            SchemeName,
            Caller.UserIdClaim,
            "role");
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        // The authentication middleware keeps only successful results: ask again (cached) for the failure's reason.
        var result = await HandleAuthenticateOnceSafeAsync();
        await AuthProblems.WriteChallengeAsync(Context, result.Failure?.Message ?? "The API key is not valid.");
    }
}

using System.Text;
using Microsoft.Extensions.Options;

namespace Parley.Server.Hosting.Auth;

internal sealed class AuthOptionsValidator(IHostEnvironment environment) : IValidateOptions<AuthOptions>
{
    public ValidateOptionsResult Validate(string? name, AuthOptions options)
    {
        var failures = new List<string>();
        if (!Enum.IsDefined(options.Mode))
        {
            failures.Add("Auth:Mode must be 'Jwt' or 'Header'.");
        }

        for (var i = 0; i < options.Header.TrustedNetworks.Count; i++)
        {
            if (!Observability.NetworkAllowList.TryParseNetwork(options.Header.TrustedNetworks[i], out _))
            {
                failures.Add(
                    $"Auth:Header:TrustedNetworks:{i} is '{options.Header.TrustedNetworks[i]}'; expected a network in CIDR notation (10.1.0.0/16, fd00::/8) or a single address.");
            }
        }

        var jwt = options.Jwt;
        if (options.Mode == AuthMode.Jwt)
        {
            // A blank authority or audience counts as unset, as where the keys and the JWT handler are set up (a blank
            // audience there turns audience checks off).
            var hasKey = !string.IsNullOrEmpty(jwt.SigningKey);
            var hasAuthority = !string.IsNullOrWhiteSpace(jwt.Authority);
            if (hasKey && hasAuthority)
            {
                failures.Add("Auth:Jwt:SigningKey and Auth:Jwt:Authority are both set; configure one of them.");
            }
            else if (!hasKey && !hasAuthority && !environment.IsDevelopment())
            {
                failures.Add(
                    "Auth:Mode is Jwt but neither Auth:Jwt:SigningKey (HS256) nor Auth:Jwt:Authority (OpenID Connect) is configured. " +
                    "Set one of them (for example the environment variable Auth__Jwt__SigningKey), or run behind a gateway with Auth:Mode=Header.");
            }

            if (hasKey && Encoding.UTF8.GetByteCount(jwt.SigningKey!) < 32)
            {
                failures.Add("Auth:Jwt:SigningKey must be at least 32 bytes (256 bits) for HS256.");
            }

            if (hasAuthority && string.IsNullOrWhiteSpace(jwt.Audience))
            {
                failures.Add("Auth:Jwt:Audience is required with Auth:Jwt:Authority.");
            }

            if (jwt.ClockSkew < TimeSpan.Zero || jwt.ClockSkew > TimeSpan.FromMinutes(10))
            {
                failures.Add("Auth:Jwt:ClockSkew must be between 0 and 10 minutes.");
            }
        }

        foreach (var key in options.ServiceApiKeys)
        {
            if (Encoding.UTF8.GetByteCount(key ?? string.Empty) < 16)
            {
                failures.Add("Every Auth:ServiceApiKeys entry must be at least 16 characters.");
                break;
            }
        }

        if (!Identifiers.IsValidUserId(options.ServiceUserId))
        {
            failures.Add("Auth:ServiceUserId must be a well-formed user id.");
        }

        if (string.IsNullOrWhiteSpace(options.ServiceRole) || string.IsNullOrWhiteSpace(options.ServiceRoleClaim))
        {
            failures.Add("Auth:ServiceRole and Auth:ServiceRoleClaim must not be empty.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

using System.Globalization;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Parley.Server.Hosting.Auth;

namespace Parley.Server.Hosting;

/// <summary>
/// <c>dotnet run --project src/Parley.Server -- token alice [--device phone] [--service] [--hours 24]</c>:
/// prints a bearer token signed with the configured HS256 key, or the development key in Development.
/// </summary>
internal static class TokenCommand
{
    public static bool TryRun(string[] args, out int exitCode)
    {
        exitCode = 0;
        if (args.Length == 0 || args[0] != "token")
        {
            return false;
        }

        var userId = args.Length > 1 && !args[1].StartsWith("--", StringComparison.Ordinal) ? args[1] : null;
        string? deviceId = null;
        var service = false;
        var hours = 24.0;
        var rest = new List<string>();
        for (var i = userId is null ? 1 : 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--device" when i + 1 < args.Length:
                    deviceId = args[++i];
                    break;
                case "--service":
                    service = true;
                    break;
                case "--hours" when i + 1 < args.Length && double.TryParse(args[i + 1], CultureInfo.InvariantCulture, out hours):
                    i++;
                    break;
                default:
                    rest.Add(args[i]);
                    break;
            }
        }

        if (!Identifiers.IsValidUserId(userId) || hours <= 0)
        {
            Console.Error.WriteLine("usage: token <user-id> [--device <device-id>] [--service] [--hours <hours>]");
            exitCode = 2;
            return true;
        }

        var builder = WebApplication.CreateBuilder([.. rest]);
        var auth = builder.Configuration.GetSection(AuthOptions.SectionName).Get<AuthOptions>() ?? new AuthOptions();
        var keys = new JwtKeys(Options.Create(auth), builder.Environment);
        if (keys.SigningKey is null)
        {
            Console.Error.WriteLine(
                "No HS256 key to sign with: set Auth:Jwt:SigningKey, or run in Development (the default of 'dotnet run') to use the development key.");
            exitCode = 1;
            return true;
        }

        var claims = new Dictionary<string, object> { [Caller.UserIdClaim] = userId! };
        if (deviceId is not null)
        {
            claims[Caller.DeviceIdClaim] = deviceId;
        }

        if (service)
        {
            claims[auth.ServiceRoleClaim] = auth.ServiceRole;
        }

        var now = DateTime.UtcNow;
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Issuer = keys.Issuer,
            Audience = keys.Audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = now.AddHours(hours),
            SigningCredentials = new SigningCredentials(keys.SigningKey, SecurityAlgorithms.HmacSha256),
        });
        Console.WriteLine(token);
        return true;
    }
}

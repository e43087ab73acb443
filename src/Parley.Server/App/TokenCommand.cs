using System.Globalization;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;

namespace Parley.Server.App;

/// <summary>
/// <c>dotnet run --project src/Parley.Server -- token alice [--device phone] [--service] [--hours 24]</c>:
/// prints a bearer token signed with the configured HS256 key, or the development key in Development.
/// </summary>
internal static class TokenCommand
{
    public const string Usage = "usage: token <user-id> [--device <device-id>] [--service] [--hours <hours>] [--Key=value ...]";

    public const string HelpText =
        $"""
        {Usage}

        Prints a bearer token (a JWT, HS256) for <user-id> and exits. It is signed with Auth:Jwt:SigningKey
        (and carries Auth:Jwt:Issuer and Auth:Jwt:Audience) when they are configured, otherwise, in Development
        (what dotnet run uses), with the documented development key. Exit code 0 with the token on standard
        output, 1 when there is no key to sign with or a setting is invalid, 2 on bad arguments.

          --device <device-id>   add a device_id claim (the WebSocket's device)
          --service              add the service role (Auth:ServiceRoleClaim = Auth:ServiceRole)
          --hours <hours>        lifetime, default 24, at most 87600 (ten years)
          --Key=value            any setting, as for the server (e.g. --environment Development)

        Example: ALICE=$(dotnet run -v q --project src/Parley.Server -- token alice)

        """;

    // Ten years: a longer lifetime is a mistake (and far enough beyond it the expiry cannot be represented).
    private const double MaxHours = 87_600;

    /// <summary>Runs the command with the arguments after <c>token</c>; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        var userId = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : null;
        string? deviceId = null;
        var service = false;
        var hours = 24.0;
        var rest = new List<string>();
        for (var i = userId is null ? 0 : 1; i < args.Length; i++)
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

        if (!Identifiers.IsValidUserId(userId) || !(hours > 0 && hours <= MaxHours))
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        var builder = WebApplication.CreateBuilder(ParleyCommandLine.ServerOptions([.. rest]));
        if (!ConfigurationCheck.Report(builder.Configuration, "Parley cannot make a token"))
        {
            return 1;
        }

        var auth = builder.Configuration.GetSection(AuthOptions.SectionName).Get<AuthOptions>() ?? new AuthOptions();
        var keys = new JwtKeys(Options.Create(auth), builder.Environment);
        if (keys.SigningKey is null)
        {
            Console.Error.WriteLine(
                "No HS256 key to sign with: set Auth:Jwt:SigningKey, or run in Development (the default of 'dotnet run') to use the development key.");
            return 1;
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

        var token = keys.CreateToken(claims, DateTime.UtcNow, TimeSpan.FromHours(hours));
        Console.WriteLine(token);
        return 0;
    }
}

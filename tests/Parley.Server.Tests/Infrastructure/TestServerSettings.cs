using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// What every in-process test server shares (the server's tests and the client library's): JWT auth under a
/// test key, a service API key, rate limits out of the way (they have tests of their own), a fast delivered
/// flush, and tokens signed for it.
/// </summary>
internal static class TestServerSettings
{
    public const string SigningKey = "parley-tests-signing-key-0123456789abcdef";
    public const string Issuer = "parley-tests";
    public const string Audience = "parley-tests-api";
    public const string ServiceApiKey = "parley-tests-service-key-0123456789";

    /// <summary>The shared settings for a server whose SQLite file is <paramref name="sqlitePath"/>.</summary>
    public static Dictionary<string, string?> Create(string sqlitePath) => new(StringComparer.OrdinalIgnoreCase)
    {
        ["ConnectionStrings:Sqlite"] = $"Data Source={sqlitePath}",
        ["Auth:Mode"] = "Jwt",
        ["Auth:Jwt:SigningKey"] = SigningKey,
        ["Auth:Jwt:Issuer"] = Issuer,
        ["Auth:Jwt:Audience"] = Audience,
        ["Auth:ServiceApiKeys:0"] = ServiceApiKey,
        ["Limits:SendBurst"] = "100000",
        ["Limits:SendRatePerSecond"] = "100000",
        ["Limits:RequestBurst"] = "100000",
        ["Limits:RequestRatePerSecond"] = "100000",
        ["Realtime:DeliveryFlushInterval"] = "00:00:00.020",
        // A user's connect sends presence to the people they share conversations with: tests that expect silence on a
        // socket would see it. Presence tests turn it on.
        ["Presence:Events"] = "false",
    };

    /// <summary>A signed token for <paramref name="userId"/> (valid for an hour unless <paramref name="expires"/>).</summary>
    public static string Token(
        string userId, string? deviceId = null, DateTime? expires = null, string? role = null, string key = SigningKey, string issuer = Issuer,
        string audience = Audience)
    {
        var claims = new Dictionary<string, object> { ["sub"] = userId };
        if (deviceId is not null)
        {
            claims["device_id"] = deviceId;
        }

        if (role is not null)
        {
            claims["role"] = role;
        }

        var now = DateTime.UtcNow;
        var notBefore = now.AddMinutes(-5);
        var expiry = expires ?? now.AddHours(1);
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Issuer = issuer,
            Audience = audience,
            IssuedAt = notBefore < expiry ? notBefore : expiry.AddMinutes(-1),
            NotBefore = notBefore < expiry ? notBefore : expiry.AddMinutes(-1),
            Expires = expiry,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
        });
    }

    /// <summary>The loopback address Kestrel listens on (it binds a free port).</summary>
    public static Uri KestrelAddress(IServiceProvider services)
    {
        var addresses = services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        return new Uri(addresses.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal));
    }

    /// <summary>A loopback port free right now, for a process or listener a test starts itself (or for nothing to listen on).</summary>
    public static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Removes a test server's directory; a leftover temp directory is harmless.</summary>
    public static void DeleteDirectory(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Left behind.
        }
    }
}

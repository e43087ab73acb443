using System.Text;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests.Infrastructure;

/// <summary>
/// The real server in process on Kestrel (a loopback port), on its own SQLite file (or PostgreSQL database when
/// the suite runs against PostgreSQL), with JWT auth under a test key and a service API key: the library is
/// tested over real HTTP and real WebSockets.
/// </summary>
public sealed class ServerFactory : WebApplicationFactory<Program>
{
    public const string SigningKey = "parley-client-tests-signing-key-0123456789";
    public const string Issuer = "parley-client-tests";
    public const string Audience = "parley-client-tests-api";
    public const string ServiceApiKey = "parley-client-tests-service-key-0123";

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-client-tests", Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings = new(StringComparer.OrdinalIgnoreCase);
    private readonly string? _postgres;

    public ServerFactory()
        : this(null)
    {
    }

    internal ServerFactory(Action<Dictionary<string, string?>>? configure)
    {
        Directory.CreateDirectory(_directory);
        _settings["ConnectionStrings:Sqlite"] = $"Data Source={Path.Combine(_directory, "parley.db")}";
        _settings["Auth:Mode"] = "Jwt";
        _settings["Auth:Jwt:SigningKey"] = SigningKey;
        _settings["Auth:Jwt:Issuer"] = Issuer;
        _settings["Auth:Jwt:Audience"] = Audience;
        _settings["Auth:Jwt:ClockSkew"] = "00:00:00";
        _settings["Auth:ServiceApiKeys:0"] = ServiceApiKey;
        _settings["Limits:SendBurst"] = "100000";
        _settings["Limits:SendRatePerSecond"] = "100000";
        _settings["Limits:RequestBurst"] = "100000";
        _settings["Limits:RequestRatePerSecond"] = "100000";
        _settings["Realtime:DeliveryFlushInterval"] = "00:00:00.020";
        if (TestPostgres.Selected)
        {
            _postgres = TestPostgres.CreateDatabase(fromTemplate: true);
            _settings["Storage:Provider"] = "Postgres";
            _settings["ConnectionStrings:Postgres"] = _postgres;
        }

        configure?.Invoke(_settings);
        UseKestrel(0);
        StartServer();
    }

    public Uri BaseAddress
    {
        get
        {
            var addresses = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
            return new Uri(addresses.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal));
        }
    }

    /// <summary>A REST client for <paramref name="userId"/> whose token provider mints a fresh token on every call.</summary>
    internal ParleyClient Client(string userId, string? deviceId = null, Uri? baseAddress = null) =>
        new(baseAddress ?? BaseAddress, ParleyCredentials.Bearer(_ => ValueTask.FromResult(Token(userId, deviceId))));

    internal ParleyClient ServiceClient() => new(BaseAddress, ParleyCredentials.ApiKey(ServiceApiKey));

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }
    }

    public static string Token(string userId, string? deviceId = null, DateTime? expires = null, string key = SigningKey)
    {
        var claims = new Dictionary<string, object> { ["sub"] = userId };
        if (deviceId is not null)
        {
            claims["device_id"] = deviceId;
        }

        var now = DateTime.UtcNow;
        var expiry = expires ?? now.AddHours(1);
        var issued = now.AddMinutes(-1);
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            Issuer = Issuer,
            Audience = Audience,
            IssuedAt = issued,
            NotBefore = issued,
            Expires = expiry,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
        });
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (_postgres is not null)
        {
            await TestPostgres.DropDatabaseAsync(_postgres);
        }

        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }
}

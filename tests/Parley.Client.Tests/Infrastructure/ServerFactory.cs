using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests.Infrastructure;

/// <summary>
/// The real server in process on Kestrel (a loopback port), on its own SQLite file (or PostgreSQL database when
/// the suite runs against PostgreSQL), with JWT auth under a test key and a service API key: the library is
/// tested over real HTTP and real WebSockets.
/// </summary>
public sealed class ServerFactory : WebApplicationFactory<Program>
{
    public const string SigningKey = TestServerSettings.SigningKey;
    public const string Issuer = TestServerSettings.Issuer;
    public const string Audience = TestServerSettings.Audience;
    public const string ServiceApiKey = TestServerSettings.ServiceApiKey;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-client-tests", Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings;
    private readonly string? _postgres;

    public ServerFactory()
        : this(null)
    {
    }

    internal ServerFactory(Action<Dictionary<string, string?>>? configure)
    {
        Directory.CreateDirectory(_directory);
        _settings = TestServerSettings.Create(Path.Combine(_directory, "parley.db"));
        // Token expiry is tested to the second.
        _settings["Auth:Jwt:ClockSkew"] = "00:00:00";
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

    public Uri BaseAddress => TestServerSettings.KestrelAddress(Services);

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

    public static string Token(string userId, string? deviceId = null, DateTime? expires = null, string key = SigningKey) =>
        TestServerSettings.Token(userId, deviceId, expires, key: key);

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (_postgres is not null)
        {
            await TestPostgres.DropDatabaseAsync(_postgres);
        }

        TestServerSettings.DeleteDirectory(_directory);
    }
}

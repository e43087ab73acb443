using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Bench.Tests.Infrastructure;

/// <summary>
/// The real server in process on Kestrel (a free loopback port), on a SQLite file in a directory of its own,
/// whatever store the suite's pass selects: the smoke runs test the tool, not the store. Header authentication
/// (the tool's default) unless <see cref="Jwt"/> is asked for, with the send and request limits out of the way.
/// </summary>
public sealed class BenchServer : WebApplicationFactory<Program>
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-bench-tests", Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings;

    public BenchServer()
        : this(jwt: false)
    {
    }

    private BenchServer(bool jwt, IReadOnlyDictionary<string, string?>? extra = null)
    {
        Directory.CreateDirectory(_directory);
        _settings = TestServerSettings.Create(Path.Combine(_directory, "parley.db"));
        _settings["Storage:Provider"] = "Sqlite";
        _settings["Auth:Mode"] = jwt ? "Jwt" : "Header";
        _settings["Logging:LogLevel:Default"] = "Warning";
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            _settings[key] = value;
        }

        UseKestrel(0);
        StartServer();
    }

    public static string SigningKey => TestServerSettings.SigningKey;

    public static string Issuer => TestServerSettings.Issuer;

    public static string Audience => TestServerSettings.Audience;

    /// <summary>A server that authenticates with JWTs signed with <see cref="SigningKey"/>.</summary>
    public static BenchServer Jwt() => new(jwt: true);

    /// <summary>A server with these settings on top of the usual ones.</summary>
    public static BenchServer With(IReadOnlyDictionary<string, string?> settings) => new(jwt: false, settings);

    public Uri Address => TestServerSettings.KestrelAddress(Services);

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        TestServerSettings.DeleteDirectory(_directory);
    }
}

using System.Net.Http.Headers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The whole server in process, on its own SQLite file, with JWT auth (a test key) and a service API key.
/// <see cref="StartKestrel"/> serves it on a real loopback port for WebSocket tests.
/// </summary>
internal sealed class ParleyFactory : WebApplicationFactory<Program>
{
    public const string SigningKey = TestServerSettings.SigningKey;
    public const string Issuer = TestServerSettings.Issuer;
    public const string Audience = TestServerSettings.Audience;
    public const string ServiceApiKey = TestServerSettings.ServiceApiKey;

    private readonly Action<IServiceCollection>? _services;
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-tests", Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings;
    private bool _kestrel;

    /// <param name="configure">Settings to add or override.</param>
    /// <param name="time">A fake clock for the server.</param>
    /// <param name="sharedPostgres">A PostgreSQL database this server uses (and does not drop): several servers on one database.</param>
    /// <param name="services">Services to add or replace (e.g. a logger provider that captures the server's log).</param>
    public ParleyFactory(
        Action<Dictionary<string, string?>>? configure = null, FakeTimeProvider? time = null, string? sharedPostgres = null,
        Action<IServiceCollection>? services = null)
    {
        _services = services;
        Directory.CreateDirectory(_directory);
        DatabasePath = Path.Combine(_directory, "parley.db");
        _settings = TestServerSettings.Create(DatabasePath);
        // Live events start at once; the wait for a first-frame resume has tests of its own.
        _settings["Delivery:FirstFrameWait"] = "00:00:00";
        if (sharedPostgres is not null)
        {
            _settings["Storage:Provider"] = "Postgres";
            _settings["ConnectionStrings:Postgres"] = sharedPostgres;
        }
        else if (TestPostgres.Selected)
        {
            _ownedPostgres = TestPostgres.CreateDatabase(fromTemplate: true);
            _settings["Storage:Provider"] = "Postgres";
            _settings["ConnectionStrings:Postgres"] = _ownedPostgres;
        }

        configure?.Invoke(_settings);
        Time = time;
    }

    public string DatabasePath { get; }

    // This server's own PostgreSQL database (dropped with it) when the suite runs against PostgreSQL.
    private readonly string? _ownedPostgres;
    private bool _keepData;

    public FakeTimeProvider? Time { get; }

    /// <summary>Serve on 127.0.0.1 with a free port (WebSockets over real sockets). Call before the first request.</summary>
    public ParleyFactory StartKestrel()
    {
        _kestrel = true;
        UseKestrel(0);
        StartServer();
        return this;
    }

    /// <summary>
    /// Serves on Kestrel's endpoints from configuration (<c>Kestrel:Endpoints</c>, given as settings) only, as a server
    /// started with them does; <see cref="StartKestrel"/>'s port would take their place.
    /// </summary>
    public ParleyFactory StartKestrelOnConfiguredEndpoints()
    {
        _kestrel = true;
        UseKestrel();
        StartServer();
        return this;
    }

    public Uri BaseAddress
    {
        get
        {
            if (!_kestrel)
            {
                return Server.BaseAddress;
            }

            return TestServerSettings.KestrelAddress(Services);
        }
    }

    public Uri WebSocketUri(string query = "") =>
        new UriBuilder(BaseAddress) { Scheme = "ws", Path = "/ws", Query = query }.Uri;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }

        if (Time is not null)
        {
            builder.ConfigureServices(services => services.Replace(ServiceDescriptor.Singleton<TimeProvider>(Time)));
        }

        if (_services is not null)
        {
            builder.ConfigureServices(_services);
        }
    }

    /// <summary>An HTTP client authenticated as <paramref name="userId"/> with a bearer token.</summary>
    public ParleyApi Api(string userId, string? deviceId = null)
    {
        var client = _kestrel ? new HttpClient { BaseAddress = BaseAddress } : CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(userId, deviceId));
        return new ParleyApi(client);
    }

    /// <summary>An HTTP client with the service role (API key).</summary>
    public ParleyApi ServiceApi()
    {
        var client = _kestrel ? new HttpClient { BaseAddress = BaseAddress } : CreateClient();
        client.DefaultRequestHeaders.Add("X-Api-Key", ServiceApiKey);
        return new ParleyApi(client);
    }

    /// <summary>An HTTP client with no credentials.</summary>
    public HttpClient Anonymous() => _kestrel ? new HttpClient { BaseAddress = BaseAddress } : CreateClient();

    public static string Token(
        string userId, string? deviceId = null, DateTime? expires = null, string? role = null, string key = SigningKey, string issuer = Issuer,
        string audience = Audience) =>
        TestServerSettings.Token(userId, deviceId, expires, role, key, issuer, audience);

    /// <summary>The settings that locate this server's data: another server given them serves the same data (a restart).</summary>
    public Dictionary<string, string?> StorageSettings() =>
        _settings.Where(s => s.Key.StartsWith("Storage:", StringComparison.OrdinalIgnoreCase) || s.Key.StartsWith("ConnectionStrings:", StringComparison.OrdinalIgnoreCase))
            .ToDictionary(s => s.Key, s => s.Value, StringComparer.OrdinalIgnoreCase);

    /// <summary>The number of rows of one of this server's tables, read over a connection of the test's own.</summary>
    public async Task<long> CountRowsAsync(string table)
    {
        var settings = StorageSettings();
        System.Data.Common.DbConnection connection = settings.TryGetValue("Storage:Provider", out var provider) && provider == "Postgres"
            ? new Npgsql.NpgsqlConnection(settings["ConnectionStrings:Postgres"])
            : new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={DatabasePath}");
        await using (connection)
        {
            await connection.OpenAsync(TestContext.Current.CancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = $"SELECT COUNT(*) FROM {table}";
            return Convert.ToInt64(await command.ExecuteScalarAsync(TestContext.Current.CancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Stops the server but keeps its database, for a server started on the same <see cref="StorageSettings"/>.</summary>
    public ValueTask DisposeKeepingDataAsync()
    {
        _keepData = true;
        return DisposeAsync();
    }

    /// <summary>The server's store, once its host is built: disposed (awaited) after the host.</summary>
    private IAsyncDisposable? _store;

    protected override IHost CreateHost(IHostBuilder builder)
    {
        var host = base.CreateHost(builder);
        _store = host.Services.GetService<Parley.Server.Storage.IChatStore>() as IAsyncDisposable;
        return host;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        // The host's disposal does not wait for the store's asynchronous disposal (seen: a SQLite store still open,
        // its file lock held and its log not checkpointed, after it returned). Disposing again waits for it.
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        if (_keepData)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            return;
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (_ownedPostgres is not null)
        {
            await TestPostgres.DropDatabaseAsync(_ownedPostgres);
        }

        TestServerSettings.DeleteDirectory(_directory);
    }
}

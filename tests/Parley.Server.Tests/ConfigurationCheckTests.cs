using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Parley.Server.App;
using Parley.Server.Storage.Migrations;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Bad values of known settings and unknown keys. A value the configuration binder could not convert
/// (<c>--Storage:Provider=Mongo</c>, <c>--Auth:Mode=Basic</c>, <c>--Limits:SendBurst=abc</c>) or an address Kestrel
/// could not parse (<c>--urls http://127.0.0.1:99999</c>, <c>--urls notaurl</c>) ended the server with
/// "Unhandled exception", a stack trace and exit code 134; a misspelt key was ignored without a word.
/// </summary>
public sealed class ConfigurationCheckTests
{
    private static readonly TimeSpan ProcessBound = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("Storage:Provider", "Mongo", "Storage:Provider is 'Mongo'; allowed values: Sqlite, Postgres.")]
    [InlineData("Storage:Provider", "7", "Storage:Provider is '7'; allowed values: Sqlite, Postgres.")]
    [InlineData("Storage:SqliteWriterCacheMiB", "0", "Storage:SqliteWriterCacheMiB is '0'; expected a whole number from 1 to 65536.")]
    [InlineData("Storage:SqliteBackgroundCheckpoints", "sometimes", "Storage:SqliteBackgroundCheckpoints is 'sometimes'; allowed values: true, false.")]
    [InlineData("Auth:Mode", "Basic", "Auth:Mode is 'Basic'; allowed values: Jwt, Header.")]
    [InlineData("Limits:SendBurst", "abc", "Limits:SendBurst is 'abc'; expected a whole number from 1 to 1000000.")]
    [InlineData("Limits:SendBurst", "0", "Limits:SendBurst is '0'; expected a whole number from 1 to 1000000.")]
    [InlineData("Realtime:HeartbeatInterval", "25s", "Realtime:HeartbeatInterval is '25s'; expected a duration such as 00:00:05 (hh:mm:ss, or d.hh:mm:ss for days).")]
    [InlineData("Realtime:HeartbeatInterval", "00:00:00", "Realtime:HeartbeatInterval is '00:00:00'; expected a duration from 00:00:01 to 00:10:00.")]
    [InlineData("Delivery:CursorRetention", "7.00:00:00", "Delivery:CursorRetention is '7.00:00:00'; expected a duration of at least 30.00:00:00.")]
    [InlineData("Delivery:CatchUpPage", "many", "Delivery:CatchUpPage is 'many'; expected a whole number from 10 to 100000.")]
    [InlineData("Auth:Jwt:RequireHttpsMetadata", "yes", "Auth:Jwt:RequireHttpsMetadata is 'yes'; allowed values: true, false.")]
    [InlineData("urls", "notaurl", "Urls has 'notaurl', which is not an address to listen on; expected URLs such as http://localhost:8083 or http://*:8083, separated by ';'.")]
    [InlineData("urls", "http://127.0.0.1:99999", "Urls has 'http://127.0.0.1:99999'; the port must be from 0 to 65535 (0: any free port).")]
    [InlineData("urls", "http://localhost:8083;ftp://localhost:21", "Urls has 'ftp://localhost:21'; the scheme must be http or https.")]
    public void Check_BadValue_IsOneLineNamingTheKeyAndWhatIsAllowed(string key, string value, string expected)
    {
        var problems = ConfigurationCheck.Check(Configuration((key, value)));

        Assert.Equal([expected], problems.Errors);
    }

    [Theory]
    [InlineData("Limits", "SendBurst", "abc")]
    [InlineData("Limits", "SendBurst", "12")]
    [InlineData("Limits", "SendBurst", "1.5")]
    [InlineData("Limits", "EditWindow", "2.00:00:00")]
    [InlineData("Limits", "EditWindow", "two days")]
    [InlineData("Storage", "Provider", "postgres")]
    [InlineData("Storage", "Provider", "Mongo")]
    [InlineData("Auth", "Mode", "header")]
    [InlineData("Auth", "Jwt:ClockSkew", "00:01:00")]
    [InlineData("Auth", "Jwt:ClockSkew", "1m")]
    [InlineData("Auth", "Jwt:RequireHttpsMetadata", "false")]
    [InlineData("Auth", "Jwt:RequireHttpsMetadata", "no")]
    [InlineData("Realtime", "SendQueueCapacity", "1e3")]
    public void Check_ConversionFailures_AreExactlyTheOnesTheBinderThrowsOn(string section, string key, string value)
    {
        // The check converts as the binder does: it must neither miss a value that crashes start-up nor refuse one that binds.
        var configuration = Configuration(($"{section}:{key}", value));
        var type = ConfigurationCheck.Sections.Single(s => s.Section == section).Type;
        var binderThrows = false;
        try
        {
            configuration.GetSection(section).Get(type);
        }
        catch (InvalidOperationException)
        {
            binderThrows = true;
        }

        Assert.Equal(binderThrows, ConfigurationCheck.Check(configuration).Errors.Count > 0);
    }

    [Theory]
    [InlineData("Limits", "EditWindow", "00:00:00", "3650.00:00:00")]
    [InlineData("Realtime", "HeartbeatInterval", "00:00:01", "00:10:00")]
    [InlineData("Realtime", "HeartbeatTimeout", "00:00:01", "00:10:00")]
    [InlineData("Realtime", "SendTimeout", "00:00:00.1", "00:05:00")]
    [InlineData("Realtime", "CloseTimeout", "00:00:00.1", "00:01:00")]
    [InlineData("Realtime", "TypingTimeout", "00:00:00.1", "00:05:00")]
    [InlineData("Realtime", "DeliveryFlushInterval", "00:00:00.001", "00:00:10")]
    [InlineData("Delivery", "CursorRetention", "30.00:00:00", null)]
    [InlineData("Delivery", "CursorInterval", "00:00:00.1", "00:05:00")]
    [InlineData("Delivery", "FirstFrameWait", "00:00:00", "00:00:30")]
    [InlineData("Delivery", "SequencerInterval", "00:00:00.001", "00:00:10")]
    public void Duration_AtItsBounds_IsAcceptedAndATickBeyondIsRefused(string section, string key, string min, string? max)
    {
        // The bounds as the server has always enforced them: refused before start (the check) and by options validation.
        var type = ConfigurationCheck.Sections.Single(s => s.Section == section).Type;
        var low = TimeSpan.Parse(min, CultureInfo.InvariantCulture);
        TimeSpan?[] accepted = [low, max is null ? TimeSpan.MaxValue : TimeSpan.Parse(max, CultureInfo.InvariantCulture)];
        TimeSpan?[] refused = [low == TimeSpan.Zero ? -TimeSpan.FromTicks(1) : low - TimeSpan.FromTicks(1), accepted[1] == TimeSpan.MaxValue ? null : accepted[1] + TimeSpan.FromTicks(1)];
        foreach (var value in accepted)
        {
            Assert.Empty(ConfigurationCheck.Check(Configuration(($"{section}:{key}", value!.Value.ToString("c")))).Errors);
            Assert.Empty(ValidateOptions(type, key, value.Value));
        }

        foreach (var value in refused.OfType<TimeSpan>())
        {
            var error = Assert.Single(ConfigurationCheck.Check(Configuration(($"{section}:{key}", value.ToString("c")))).Errors);
            Assert.StartsWith($"{section}:{key} is '{value:c}'; expected a duration ", error, StringComparison.Ordinal);
            Assert.Contains(key, Assert.Single(ValidateOptions(type, key, value)).MemberNames);
        }
    }

    [Fact]
    public void Check_EveryKnownSettingAtItsDefault_HasNoProblem()
    {
        var settings = new List<(string, string?)>();
        foreach (var (section, type) in ConfigurationCheck.Sections)
        {
            AddDefaults(section, Activator.CreateInstance(type)!, settings);
        }

        settings.Add(("ConnectionStrings:Sqlite", "Data Source=parley.db"));
        settings.Add(("ConnectionStrings:Postgres", "Host=db"));
        settings.Add(("urls", "http://localhost:8083;https://*:8443;http://unix:/run/parley.sock"));

        var problems = ConfigurationCheck.Check(Configuration([.. settings]));

        Assert.True(settings.Count > 30, $"only {settings.Count} settings were generated");
        Assert.Empty(problems.Errors);
        Assert.Empty(problems.Unknown);
    }

    [Fact]
    public void Check_UnknownKeyInEverySection_IsReportedWithTheKnownOnes()
    {
        var configuration = Configuration(
            ("Storage:Provder", "Postgres"),
            ("Auth:Jwt:Audiance", "parley"),
            ("Limits:MaxContentLenght", "10"),
            ("Realtime:Heartbeat", "00:00:05"),
            ("Delivery:CursorRetension", "40.00:00:00"),
            ("Cors:AllowedOrigin", "https://app.example.com"),
            ("ConnectionStrings:Postgress", "Host=db"),
            ("Logging:LogLevel:Default", "Warning"));

        var unknown = ConfigurationCheck.Check(configuration).Unknown;

        Assert.Equal(
            ["Storage:Provder", "Auth:Jwt:Audiance", "Limits:MaxContentLenght", "Realtime:Heartbeat", "Delivery:CursorRetension", "Cors:AllowedOrigin", "ConnectionStrings:Postgress"],
            unknown.Select(u => u.Key));
        var storage = unknown.Single(u => u.Key == "Storage:Provder");
        Assert.Equal("unknown setting Storage:Provder is ignored; the settings of Storage are Provider, SqliteBackgroundCheckpoints, SqliteWriterCacheMiB, SqliteGatherWalWrites.", ConfigurationCheck.Describe(storage));
        Assert.Contains("Audience", unknown.Single(u => u.Key == "Auth:Jwt:Audiance").Known);
        Assert.Equal(["Sqlite", "Postgres", "Redis"], unknown.Single(u => u.Key == "ConnectionStrings:Postgress").Known);
    }

    [Theory]
    [InlineData("Auth:Header:TrustedNetworks", "10.0.0.0/8", "list", "0")] // bound empty, it would trust every peer
    [InlineData("Auth:ServiceApiKeys", "0123456789abcdef0123", "list", "0")]
    [InlineData("Metrics:AllowedNetworks", "10.0.0.0/8", "list", "0")]
    [InlineData("Events:Webhooks:crm:EventTypes", "receipt.read", "list", "0")] // bound empty, the endpoint would get every type
    [InlineData("Events:Webhooks", "https://hooks.example.com", "set of named entries", "<name>:<setting>")]
    public void Check_AListGivenOneValue_IsRefusedWithTheFormThatWorks(string key, string value, string kind, string entry)
    {
        var problems = ConfigurationCheck.Check(Configuration((key, value), ("Events:Webhooks:crm:Url", "https://hooks.example.com/parley")));

        var error = Assert.Single(problems.Errors);
        Assert.StartsWith($"{key} is given one value, but it is a {kind}: give each entry its own key, {key}:{entry} (in the environment {key.Replace(":", "__", StringComparison.Ordinal)}__", error, StringComparison.Ordinal);
        Assert.DoesNotContain(value, error, StringComparison.Ordinal); // an API key must not reach the log
    }

    [Fact]
    public void Check_AListGivenByIndex_OrEmpty_IsFine()
    {
        var problems = ConfigurationCheck.Check(Configuration(
            ("Auth:Header:TrustedNetworks:0", "10.0.0.0/8"), ("Auth:Header:TrustedNetworks:1", "fd00::/8"), ("Metrics:AllowedNetworks", "")));

        Assert.Empty(problems.Errors);
        Assert.Empty(problems.Unknown);
    }

    [Theory]
    [InlineData("Header", "true", "Auth:Header:TrustedNetworks and Metrics:AllowedNetworks")]
    [InlineData("Jwt", null, "Metrics:AllowedNetworks")]
    [InlineData("Header", "false", "Auth:Header:TrustedNetworks")]
    public void Check_ForwardedHeadersEnabled_IsRefusedWhileAnAddressCheckWouldTrustThem(string mode, string? metrics, string named)
    {
        // With it, a client sending X-Forwarded-For: 127.0.0.1 read /metrics, and one claiming the gateway's address was trusted.
        var settings = new List<(string, string?)> { ("FORWARDEDHEADERS_ENABLED", "true"), ("Auth:Mode", mode) };
        if (metrics is not null)
        {
            settings.Add(("Metrics:Enabled", metrics));
        }

        var error = Assert.Single(ConfigurationCheck.Check(Configuration([.. settings]), serving: true).Errors);

        Assert.Empty(ConfigurationCheck.Check(Configuration([.. settings])).Errors); // migrate, new-epoch and token take no requests
        Assert.StartsWith("ASPNETCORE_FORWARDEDHEADERS_ENABLED is true: every client could then set its own address with X-Forwarded-For, and " + named + " would trust it.", error, StringComparison.Ordinal);
        Assert.Empty(ConfigurationCheck.Check(Configuration(("FORWARDEDHEADERS_ENABLED", "true"), ("Auth:Mode", "Jwt"), ("Metrics:Enabled", "false")), serving: true).Errors);
        Assert.Empty(ConfigurationCheck.Check(Configuration(("FORWARDEDHEADERS_ENABLED", "false"), ("Auth:Mode", "Header")), serving: true).Errors);
    }

    [Fact]
    public void Check_AWebhookEntry_IsCheckedAsASection()
    {
        var problems = ConfigurationCheck.Check(Configuration(
            ("Events:Webhooks:crm:Url", "https://hooks.example.com/parley"),
            ("Events:Webhooks:crm:MaxAttempt", "3"),
            ("Events:Webhooks:crm:Timeout", "soon"),
            ("Events:Webhooks:crm:EventTypes:0", "receipt.read")));

        Assert.Equal(["Events:Webhooks:crm:MaxAttempt"], problems.Unknown.Select(u => u.Key));
        Assert.Contains("MaxAttempts", problems.Unknown[0].Known);
        var error = Assert.Single(problems.Errors);
        Assert.StartsWith("Events:Webhooks:crm:Timeout is 'soon'; expected a duration", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Sections_CoverEveryOptionsTypeParleyBinds()
    {
        // Every options type has a SectionName constant; one left out of the check would crash again on a bad value.
        var bound = typeof(ConfigurationCheck).Assembly.GetTypes()
            .Where(t => t.GetField("SectionName", BindingFlags.Public | BindingFlags.Static) is { IsLiteral: true })
            .Select(t => ((string)t.GetField("SectionName")!.GetRawConstantValue()!, t))
            .OrderBy(s => s.Item1, StringComparer.Ordinal);

        Assert.Equal(bound, ConfigurationCheck.Sections.OrderBy(s => s.Section, StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("Storage:Provider is 'Mongo'; allowed values: Sqlite, Postgres.", "--Storage:Provider=Mongo")]
    [InlineData("Auth:Mode is 'Basic'; allowed values: Jwt, Header.", "--Auth:Mode=Basic")]
    [InlineData("Limits:SendBurst is 'abc'; expected a whole number from 1 to 1000000.", "--Limits:SendBurst=abc")]
    [InlineData("Urls has 'http://127.0.0.1:99999'; the port must be from 0 to 65535 (0: any free port).", "--urls", "http://127.0.0.1:99999")]
    [InlineData("Urls has 'notaurl', which is not an address to listen on; expected URLs such as http://localhost:8083 or http://*:8083, separated by ';'.", "--urls", "notaurl")]
    public async Task BadValue_RealServer_Exits1WithTheKeyAndNoStackTrace(string expected, params string[] args)
    {
        var directory = Directory.CreateTempSubdirectory("parley-settings-");
        try
        {
            var run = await ServerCommand.RunAsync(directory.FullName, "Development", ["--urls", "http://127.0.0.1:0", .. args], ProcessBound);

            Assert.Equal(1, run.ExitCode);
            Assert.Equal($"Parley cannot start: invalid configuration.{Environment.NewLine}  - {expected}{Environment.NewLine}", run.Error);
            Assert.DoesNotContain("Unhandled exception", run.Output + run.Error, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", run.Output + run.Error, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task BadValue_TokenCommand_Exits1WithTheKey()
    {
        var run = await ConsoleCapture.RunAsync(() => ParleyCommandLine.RunCommandAsync(["token", "alice", "--environment", "Development", "--Auth:Mode=Basic"]));

        Assert.Equal(1, run.Result);
        Assert.Contains("Parley cannot make a token: invalid configuration.", run.Error, StringComparison.Ordinal);
        Assert.Contains("  - Auth:Mode is 'Basic'; allowed values: Jwt, Header.", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MisspeltKey_RealServer_StartsAndLogsAWarningNamingTheKnownKeys_AndTheMigrationsItApplied()
    {
        var directory = Directory.CreateTempSubdirectory("parley-settings-");
        try
        {
            await using (var server = ServerCommand.Start(
                directory.FullName, "Production", ["--urls", "http://127.0.0.1:0", "--Auth:Mode=Header", "--Storage:Provder=Postgres"]))
            {
                await server.WaitForOutputAsync("Unknown setting Storage:Provder is ignored; the settings of Storage are Provider", ProcessBound);
                // Header mode outside Development with no gateway networks: anyone who reaches Parley can be anyone.
                await server.WaitForOutputAsync("Auth:Mode is Header and Auth:Header:TrustedNetworks is empty", ProcessBound);
                // The start-up log says which migrations it applied to the new file, not only that the schema is current.
                var scripts = string.Join(", ", MigrationScripts.For("Sqlite").Select(m => m.FullName));
                await server.WaitForOutputAsync(
                    $"Storage (Sqlite): applied {MigrationScripts.For("Sqlite").Count} migrations ({scripts}); schema is current", ProcessBound);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public Task AspNetCoreUrls_RealServer_ListensThere_NotOnTheDefaultPort() => InScratchDirectoryAsync(async directory =>
    {
        // Containers set ASPNETCORE_URLS; a Urls key in appsettings.json used to take precedence over it.
        var port = TestServerSettings.FreePort();
        await using var server = ServerCommand.Start(
            directory, "Production", ["--Auth:Mode=Header"], new Dictionary<string, string> { ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}" });
        await server.WaitForOutputAsync($"http://127.0.0.1:{port}", ProcessBound);
        using var client = new HttpClient();
        Assert.Equal(System.Net.HttpStatusCode.OK, (await client.GetAsync($"http://127.0.0.1:{port}/health", TestContext.Current.CancellationToken)).StatusCode);
    });

    [Fact]
    public Task ContentLimitAboveWhatTheBodyLimitHolds_RealServer_LogsAWarningNamingBoth() => InScratchDirectoryAsync(async directory =>
    {
        await using var server = ServerCommand.Start(
            directory, "Production", ["--urls", "http://127.0.0.1:0", "--Auth:Mode=Header", "--Limits:MaxContentLength=16384"]);
        await server.WaitForOutputAsync("Limits:MaxRequestBytes (65536) may be too small for Limits:MaxContentLength (16384)", ProcessBound);
        await server.WaitForOutputAsync("Limits:MaxFrameBytes (65536) may be too small for Limits:MaxContentLength (16384)", ProcessBound);
    });

    [Fact]
    public Task DevelopmentKey_OnAnAddressOthersCanReach_RealServer_LogsAWarning() => InScratchDirectoryAsync(async directory =>
    {
        await using var server = ServerCommand.Start(directory, "Development", ["--urls", "http://0.0.0.0:0"]);
        await server.WaitForOutputAsync("The documented development signing key is in use on http://0.0.0.0:", ProcessBound);
    });

    /// <summary>Runs <paramref name="test"/> in a new directory (a server's working directory: its parley.db), deleted after.</summary>
    private static async Task InScratchDirectoryAsync(Func<string, Task> test)
    {
        var directory = Directory.CreateTempSubdirectory("parley-settings-");
        try
        {
            await test(directory.FullName);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static IConfiguration Configuration(params (string Key, string? Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();

    /// <summary>What ValidateDataAnnotations reports for the options type with one duration set (and the rest at their defaults).</summary>
    private static List<ValidationResult> ValidateOptions(Type type, string key, TimeSpan value)
    {
        var options = Activator.CreateInstance(type)!;
        type.GetProperty(key)!.SetValue(options, value);
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results;
    }

    private static void AddDefaults(string prefix, object options, List<(string, string?)> settings)
    {
        foreach (var property in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var value = property.GetValue(options);
            var key = $"{prefix}:{property.Name}";
            if (value is null || value is IEnumerable and not string)
            {
                continue;
            }

            if (value is string or TimeSpan or Enum or bool || value.GetType().IsPrimitive)
            {
                settings.Add((key, Convert.ToString(value, CultureInfo.InvariantCulture)));
            }
            else
            {
                AddDefaults(key, value, settings);
            }
        }
    }
}

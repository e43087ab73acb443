using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Parley.Server.Events;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Observability;
using Parley.Server.Presence;
using Parley.Server.Realtime;
using Parley.Server.Storage;
using Parley.Server.Sync;
using Parley.Server.WebApp;

namespace Parley.Server.App;

/// <summary>A setting under one of Parley's sections that no option reads (a misspelt key, most likely).</summary>
internal sealed record UnknownSetting(string Key, string Section, IReadOnlyList<string> Known);

internal sealed record ConfigurationProblems(IReadOnlyList<string> Errors, IReadOnlyList<UnknownSetting> Unknown);

/// <summary>
/// Reads every setting Parley binds before anything binds it. A value the binder cannot convert
/// (<c>--Storage:Provider=Mongo</c>, <c>--Limits:SendBurst=abc</c>) would otherwise surface as an
/// <see cref="InvalidOperationException"/> from the first options lookup, deep in start-up, and crash the
/// process with a stack trace; an address Kestrel cannot parse would do the same when it binds. Here each
/// one becomes a line naming the key, the value and what is allowed. Keys under Parley's sections that no
/// option reads are reported too: a misspelt key is otherwise silently ignored.
/// Run by the server before it starts and by the <c>token</c> and <c>migrate</c> commands.
/// </summary>
internal static partial class ConfigurationCheck
{
    /// <summary>Every configuration section Parley binds, with the options type it binds to.</summary>
    public static readonly IReadOnlyList<(string Section, Type Type)> Sections =
    [
        (StorageOptions.SectionName, typeof(StorageOptions)),
        (AuthOptions.SectionName, typeof(AuthOptions)),
        (LimitsOptions.SectionName, typeof(LimitsOptions)),
        (RealtimeOptions.SectionName, typeof(RealtimeOptions)),
        (DeliveryOptions.SectionName, typeof(DeliveryOptions)),
        (CorsSettings.SectionName, typeof(CorsSettings)),
        (MetricsOptions.SectionName, typeof(MetricsOptions)),
        (TelemetryOptions.SectionName, typeof(TelemetryOptions)),
        (WebAppOptions.SectionName, typeof(WebAppOptions)),
        (FanoutOptions.SectionName, typeof(FanoutOptions)),
        (PresenceOptions.SectionName, typeof(PresenceOptions)),
        (EventsOptions.SectionName, typeof(EventsOptions)),
    ];

    /// <summary>The connection strings Parley reads (<c>ConnectionStrings:Name</c>).</summary>
    public static readonly IReadOnlyList<string> ConnectionStrings = ["Sqlite", "Postgres", "Redis"];

    /// <summary>
    /// Every problem of <paramref name="configuration"/>; with <paramref name="serving"/> (the server itself, not the
    /// <c>token</c>, <c>migrate</c> or <c>new-epoch</c> commands) also what only matters to a server that takes requests.
    /// </summary>
    public static ConfigurationProblems Check(IConfiguration configuration, bool serving = false)
    {
        var errors = new List<string>();
        var unknown = new List<UnknownSetting>();
        foreach (var (section, type) in Sections)
        {
            CheckObject(configuration.GetSection(section), type, errors, unknown);
        }

        var connectionStrings = configuration.GetSection("ConnectionStrings");
        foreach (var child in connectionStrings.GetChildren())
        {
            if (!ConnectionStrings.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                unknown.Add(new UnknownSetting(child.Path, connectionStrings.Path, ConnectionStrings));
            }
        }

        CheckUrls(configuration["urls"], errors);
        if (serving)
        {
            CheckForwardedHeaders(configuration, errors);
        }

        return new ConfigurationProblems(errors, unknown);
    }

    /// <summary>
    /// ASPNETCORE_FORWARDEDHEADERS_ENABLED puts ASP.NET Core's forwarded-headers middleware first, trusting every proxy:
    /// the client address becomes whatever X-Forwarded-For a client sends. Parley's address checks (the gateway's networks
    /// in Header mode, the networks that may read /metrics) would then let anyone through who claims an allowed address.
    /// Parley reads nothing else from forwarded headers, so the setting only weakens it.
    /// </summary>
    private static void CheckForwardedHeaders(IConfiguration configuration, List<string> errors)
    {
        if (!bool.TryParse(configuration["FORWARDEDHEADERS_ENABLED"], out var enabled) || !enabled)
        {
            return;
        }

        var header = string.Equals(configuration["Auth:Mode"], "Header", StringComparison.OrdinalIgnoreCase);
        var metrics = !bool.TryParse(configuration["Metrics:Enabled"], out var metricsEnabled) || metricsEnabled;
        if (header || metrics)
        {
            errors.Add(
                "ASPNETCORE_FORWARDEDHEADERS_ENABLED is true: every client could then set its own address with X-Forwarded-For, and " +
                $"{(header ? "Auth:Header:TrustedNetworks" : "")}{(header && metrics ? " and " : "")}{(metrics ? "Metrics:AllowedNetworks" : "")} " +
                "would trust it. Parley needs no forwarded headers (it checks the address of the connection, the proxy's): unset it.");
        }
    }

    /// <summary>
    /// Prints the problems to standard error (errors under <paramref name="failure"/>, unknown settings as warnings
    /// when <paramref name="warnUnknown"/>) and returns false when a setting is invalid.
    /// </summary>
    public static bool Report(IConfiguration configuration, string failure, bool warnUnknown = true, bool serving = false)
    {
        var problems = Check(configuration, serving);
        foreach (var setting in warnUnknown ? problems.Unknown : [])
        {
            Console.Error.WriteLine($"warning: {Describe(setting)}");
        }

        if (problems.Errors.Count == 0)
        {
            return true;
        }

        WriteErrors(Console.Error, failure, problems.Errors);
        return false;
    }

    public static void WriteErrors(TextWriter writer, string failure, IEnumerable<string> errors)
    {
        writer.WriteLine($"{failure}: invalid configuration.");
        foreach (var error in errors)
        {
            writer.WriteLine("  - " + error);
        }
    }

    public static string Describe(UnknownSetting setting) =>
        $"unknown setting {setting.Key} is ignored; the settings of {setting.Section} are {string.Join(", ", setting.Known)}.";

    /// <summary>Logs each unknown setting as a warning (the server's start-up).</summary>
    public static void LogUnknown(ILogger logger, ConfigurationProblems problems)
    {
        foreach (var setting in problems.Unknown)
        {
            Log.UnknownSetting(logger, setting.Key, setting.Section, string.Join(", ", setting.Known));
        }
    }

    private static void CheckObject(IConfigurationSection section, Type type, List<string> errors, List<UnknownSetting> unknown)
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0)
            .ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (!properties.TryGetValue(child.Key, out var property))
            {
                unknown.Add(new UnknownSetting(child.Path, section.Path, [.. properties.Keys]));
                continue;
            }

            var propertyType = property.PropertyType;
            if (IsValue(propertyType))
            {
                CheckValue(section, child, property, errors);
            }
            else if (!typeof(IEnumerable).IsAssignableFrom(propertyType))
            {
                // A nested settings object (Auth:Jwt).
                CheckObject(child, propertyType, errors, unknown);
            }
            else if (!string.IsNullOrEmpty(child.Value))
            {
                // A list or a map given one value (Auth__Header__TrustedNetworks=10.0.0.0/8): the binder leaves it empty,
                // which for some lists turns a restriction off. Refused, with the form that works.
                // The value is not repeated: some lists hold secrets (Auth:ServiceApiKeys), and this goes to the log.
                errors.Add($"{child.Path} is given one value, but it is a {(IsMap(propertyType) ? "set of named entries" : "list")}: " +
                    $"give each entry its own key, {child.Path}:{(IsMap(propertyType) ? "<name>:<setting>" : "0")} " +
                    $"(in the environment {child.Path.Replace(":", "__", StringComparison.Ordinal)}__{(IsMap(propertyType) ? "<name>__<setting>" : "0")}).");
            }
            else if (MapValueType(propertyType) is { } entryType && !IsValue(entryType))
            {
                // Named settings objects (Events:Webhooks:<name>): each entry's keys are checked as a section's.
                foreach (var entry in child.GetChildren())
                {
                    CheckObject(entry, entryType, errors, unknown);
                }
            }
        }
    }

    private static bool IsMap(Type type) => MapValueType(type) is not null;

    private static Type? MapValueType(Type type) =>
        type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>) ? type.GetGenericArguments()[1] : null;

    private static bool IsValue(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan) || type == typeof(Uri);
    }

    private static void CheckValue(IConfigurationSection section, IConfigurationSection child, PropertyInfo property, List<string> errors)
    {
        if (child.Value is not { } value)
        {
            return;
        }

        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        var range = property.GetCustomAttribute<RangeAttribute>();
        object? converted;
        try
        {
            // The binder's own conversion: what fails here fails there.
            converted = section.GetValue(property.PropertyType, child.Key);
        }
        catch (InvalidOperationException)
        {
            errors.Add($"{child.Path} is '{value}'; {Expected(type, range)}.");
            return;
        }

        if (range is not null && !range.IsValid(converted) && type == typeof(TimeSpan))
        {
            // A duration in the right format: what is wrong is its length.
            errors.Add($"{child.Path} is '{value}'; {ExpectedDuration(range)}.");
        }
        else if ((converted is not null && type.IsEnum && !Enum.IsDefined(type, converted)) || (range is not null && !range.IsValid(converted)))
        {
            errors.Add($"{child.Path} is '{value}'; {Expected(type, range)}.");
        }
    }

    /// <summary>The range of a duration setting (<c>[Range(typeof(TimeSpan), ...)]</c>); its bounds are TimeSpans once IsValid has run.</summary>
    private static string ExpectedDuration(RangeAttribute range) =>
        range.Maximum is TimeSpan max && max == TimeSpan.MaxValue
            ? string.Create(CultureInfo.InvariantCulture, $"expected a duration of at least {range.Minimum}")
            : string.Create(CultureInfo.InvariantCulture, $"expected a duration from {range.Minimum} to {range.Maximum}");

    private static string Expected(Type type, RangeAttribute? range)
    {
        if (type.IsEnum)
        {
            return "allowed values: " + string.Join(", ", Enum.GetNames(type));
        }

        if (type == typeof(bool))
        {
            return "allowed values: true, false";
        }

        if (type == typeof(TimeSpan))
        {
            return "expected a duration such as 00:00:05 (hh:mm:ss, or d.hh:mm:ss for days)";
        }

        var kind = type == typeof(int) || type == typeof(long) || type == typeof(short) ? "a whole number" : "a number";
        return range is null
            ? $"expected {kind}"
            : string.Create(CultureInfo.InvariantCulture, $"expected {kind} from {range.Minimum} to {range.Maximum}");
    }

    /// <summary>The addresses Kestrel will bind (<c>--urls</c>, <c>Urls</c>, <c>ASPNETCORE_URLS</c>), parsed as it parses them.</summary>
    private static void CheckUrls(string? urls, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(urls))
        {
            return;
        }

        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            BindingAddress address;
            try
            {
                address = BindingAddress.Parse(url);
            }
            catch (Exception ex) when (ex is FormatException or OverflowException)
            {
                errors.Add($"Urls has '{url}', which is not an address to listen on; expected URLs such as http://localhost:8083 or http://*:8083, separated by ';'.");
                continue;
            }

            if (!address.Scheme.Equals("http", StringComparison.OrdinalIgnoreCase) && !address.Scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
            {
                errors.Add($"Urls has '{url}'; the scheme must be http or https.");
            }
            else if (!address.IsUnixPipe && !address.IsNamedPipe && address.Port is < 0 or > 65535)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"Urls has '{url}'; the port must be from 0 to 65535 (0: any free port)."));
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Unknown setting {Key} is ignored; the settings of {Section} are {Known}")]
        public static partial void UnknownSetting(ILogger logger, string key, string section, string known);
    }
}

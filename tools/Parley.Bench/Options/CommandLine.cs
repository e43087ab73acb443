using System.Globalization;
using System.Text;

namespace Parley.Bench.Options;

/// <summary>
/// Parses <c>parley-bench &lt;scenario&gt; [--option value ...]</c>. One table of options drives parsing and the
/// help text, so the two cannot drift apart.
/// </summary>
internal static class CommandLine
{
    /// <summary>The development key a server started with <c>dotnet run</c> (Development) accepts, with its issuer and audience.</summary>
    public const string DevelopmentKey = "parley-development-signing-key-not-for-production-use";
    public const string DevelopmentIssuer = "parley-dev";
    public const string DevelopmentAudience = "parley";

    /// <summary>Where a signing key may come from instead of the command line (which every user of the machine can read).</summary>
    public const string TokenKeyVariable = "PARLEY_BENCH_TOKEN_KEY";

    /// <summary>The hidden option a parent passes to each child process: its slice index.</summary>
    public const string ChildOption = "--child";

    private static readonly Spec[] Specs =
    [
        new("--url", "URL[,URL...]", "Parley base address; repeat or separate with commas to spread users round-robin (default http://localhost:8083)",
            (o, v) => o with { Urls = [.. o.Urls, .. ParseUrls(v)] }),
        new("--placement", "users|conversations",
            "chat, group with several --url: spread users round-robin, so members of a conversation sit on different servers (default), or whole conversations, so delivery stays on one server",
            (o, v) => o with { Placement = Enum<Placement>(v, ("users", Placement.Users), ("conversations", Placement.Conversations)) }),
        new("--users", "N", "chat, group: online users, each with one WebSocket (default 1000)", (o, v) => o with { Users = Int(v, 2, 10_000_000) }),
        new("--rate", "R", "messages per second offered, all processes together (default: chat 1000, group 100, reconnect 200)",
            (o, v) => o with { Rate = Number(v, 0.001, 10_000_000) }),
        new("--duration", "S", "measured seconds (default 30; reconnect: the online phase, 10)", (o, v) => o with { DurationSeconds = Number(v, 0.1, 86_400) }),
        new("--warmup", "S", "seconds of traffic before the measured window, not counted (default 5; reconnect 0)",
            (o, v) => o with { WarmupSeconds = Number(v, 0, 86_400) }),
        new("--grace", "S", "seconds to wait for outstanding deliveries after the last send before they count as lost (default 5)",
            (o, v) => o with { GraceSeconds = Number(v, 0, 3600) }),
        new("--group-size", "G", "group: members per group (default 100)", (o, v) => o with { GroupSize = Int(v, 2, 100_000) }),
        new("--sink", "NAME", "relay: the event sink whose backlog to watch: kafka or webhook:<name> (default kafka)",
            (o, v) => o with { Sink = v.Trim().Length > 0 ? v.Trim() : throw new FormatException("a sink name") }),
        new("--connections", "C", "connections: idle connections; reconnect: devices (default 1000)", (o, v) => o with { Connections = Int(v, 1, 10_000_000) }),
        new("--connect-rate", "R", "connections opened per second, all processes together (default 500)", (o, v) => o with { ConnectRate = Number(v, 0.001, 1_000_000) }),
        new("--offline", "S", "reconnect: seconds the devices stay offline while messages are sent to them (default 10)",
            (o, v) => o with { OfflineSeconds = Number(v, 0, 86_400) }),
        new("--settle", "S", "reconnect: quiet seconds before the drop, for acks and cursors to catch up (default 3)",
            (o, v) => o with { SettleSeconds = Number(v, 0, 3600) }),
        new("--transport", "websocket|rest", "chat, group: send over the socket (send_message) or POST /api/v1/messages (default websocket)",
            (o, v) => o with { Transport = Enum<Transport>(v, ("websocket", Transport.WebSocket), ("ws", Transport.WebSocket), ("rest", Transport.Rest)) }),
        new("--ack-interval", "MS",
            "chat, group: connect with acks=true and acknowledge what each device holds every MS milliseconds, as Parley's clients do (default 0: no acks)",
            (o, v) => o with { AckIntervalMs = Math.Round(Number(v, 0, 60_000)) }),
        new("--message-bytes", "N", "characters of message content (default 64)", (o, v) => o with { MessageBytes = Int(v, 1, 4096) }),
        new("--http-connections", "N", "HTTP connections of the REST pool, also the concurrency of set-up and REST sends (default 64)",
            (o, v) => o with { HttpConnections = Int(v, 1, 10_000) }),
        new("--auth", "header|jwt", "header: X-User-ID (Auth:Mode=Header, default); jwt: HS256 tokens signed with --token-key",
            (o, v) => o with { Auth = Enum<AuthKind>(v, ("header", AuthKind.Header), ("jwt", AuthKind.Jwt)) }),
        new("--token-key", "KEY", $"jwt: the deployment's Auth:Jwt:SigningKey (prefer the variable {TokenKeyVariable}); without one, the development key",
            (o, v) => o with { TokenKey = v }),
        new("--token-issuer", "ISS", "jwt: the iss claim (Auth:Jwt:Issuer)", (o, v) => o with { TokenIssuer = v }),
        new("--token-audience", "AUD", "jwt: the aud claim (Auth:Jwt:Audience)", (o, v) => o with { TokenAudience = v }),
        new("--source-addresses", "SPEC", "bind client sockets to these local addresses, round-robin: a count (8 = 127.0.0.2..127.0.0.9), ranges 127.0.0.2-127.0.0.20, lists",
            (o, v) => o with { SourceAddresses = AddressList.Parse(v) }),
        new("--processes", "N", "split the run over N child processes of this tool (default 1)", (o, v) => o with { Processes = Int(v, 1, 256) }),
        new("--server-pid", "PID[,PID...]", "measure these server processes' RSS and CPU time (/proc)", (o, v) => o with { ServerPids = [.. o.ServerPids, .. Pids(v)] }),
        new("--postgres-pids", "auto|PID,...", "also measure PostgreSQL: these processes, or auto (the one PostgreSQL server's postmaster and its children)",
            (o, v) => v.Trim() == "auto" ? o with { PostgresAuto = true } : o with { PostgresPids = [.. o.PostgresPids, .. Pids(v)] }),
        new("--postgres-port", "PORT", "measure the PostgreSQL server on this port (its postmaster and its children)",
            (o, v) => o with { PostgresAuto = true, PostgresPort = Int(v, 1, 65535) }),
        new("--postgres-data", "DIR", "measure the PostgreSQL server of this data directory (its postmaster and its children)",
            (o, v) => o with { PostgresAuto = true, PostgresDataDirectory = v }),
        new("--max-p99-ms", "MS", "exit with 3 when the delivery latency's p99 exceeds this", (o, v) => o with { MaxP99Ms = Number(v, 0, 1e9) }),
        new("--run-id", "ID", "prefix of this run's user ids (default random)", (o, v) => o with { RunId = RunId(v) }),
        new("--progress", "auto|live|plain|none", "live table on a terminal, plain lines otherwise (default auto)",
            (o, v) => o with { Progress = Enum<ProgressMode>(v, ("auto", ProgressMode.Auto), ("live", ProgressMode.Live), ("plain", ProgressMode.Plain), ("none", ProgressMode.None)) }),
        new("--output", "FILE", "also write the result's JSON to FILE", (o, v) => o with { OutputFile = v }),
        new(ChildOption, "K", null, (o, v) => o with { ChildIndex = Int(v, 0, 255) }),
    ];

    /// <summary>The outcome of parsing: options, a request for help, or an error to print with the usage.</summary>
    internal sealed record Result(BenchOptions? Options, bool Help, string? Error);

    public static Result Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        environment ??= Environment.GetEnvironmentVariable;
        if (args.Count == 0 || args.Any(a => a is "-h" or "--help" or "help"))
        {
            return new Result(null, true, null);
        }

        ScenarioKind scenario;
        try
        {
            scenario = Enum<ScenarioKind>(
                args[0], ("chat", ScenarioKind.Chat), ("group", ScenarioKind.Group), ("connections", ScenarioKind.Connections), ("reconnect", ScenarioKind.Reconnect),
                ("relay", ScenarioKind.Relay));
        }
        catch (FormatException)
        {
            return new Result(null, false, $"unknown scenario '{args[0]}': expected chat, group, connections, reconnect or relay");
        }

        var options = new BenchOptions { Scenario = scenario, Urls = [] };
        var given = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 1; i < args.Count; i++)
        {
            var arg = args[i];
            string name;
            string? value = null;
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                name = arg[..equals];
                value = arg[(equals + 1)..];
            }
            else
            {
                name = arg;
            }

            var spec = Array.Find(Specs, s => s.Name == name);
            if (spec is null)
            {
                return new Result(null, false, $"unknown option '{name}'");
            }

            if (value is null)
            {
                if (i + 1 >= args.Count)
                {
                    return new Result(null, false, $"{name} needs a value ({spec.Value})");
                }

                value = args[++i];
            }

            try
            {
                options = spec.Apply(options, value);
            }
            catch (FormatException e)
            {
                return new Result(null, false, $"{name} {value}: {e.Message}");
            }

            given.Add(name);
        }

        var defaults = BenchOptions.ScenarioDefaults(scenario);
        options = options with
        {
            Urls = options.Urls.Count == 0 ? [new Uri("http://localhost:8083/")] : options.Urls,
            Rate = given.Contains("--rate") ? options.Rate : defaults.Rate,
            DurationSeconds = given.Contains("--duration") ? options.DurationSeconds : defaults.Duration,
            WarmupSeconds = given.Contains("--warmup") ? options.WarmupSeconds : defaults.Warmup,
        };
        if (options.Auth == AuthKind.Jwt)
        {
            options = WithTokenKey(options, environment);
        }

        var error = Validate(options);
        return error is null ? new Result(options, false, null) : new Result(null, false, error);
    }

    /// <summary>The command line a child process gets: the parent's options, its slice index and the shared run id.</summary>
    public static List<string> ChildArguments(IReadOnlyList<string> parentArgs, BenchOptions options, int index)
    {
        ArgumentNullException.ThrowIfNull(parentArgs);
        ArgumentNullException.ThrowIfNull(options);
        var args = new List<string>();
        for (var i = 0; i < parentArgs.Count; i++)
        {
            var arg = parentArgs[i];
            var name = arg.Split('=', 2)[0];
            if (name is "--run-id" or "--progress" or "--output" or ChildOption)
            {
                if (!arg.Contains('=', StringComparison.Ordinal))
                {
                    i++;
                }

                continue;
            }

            args.Add(arg);
        }

        args.AddRange(["--run-id", options.RunId, "--progress", "none", ChildOption, index.ToString(CultureInfo.InvariantCulture)]);
        return args;
    }

    public static string Usage()
    {
        var text = new StringBuilder();
        text.AppendLine("Parley benchmark: open-loop load against a Parley deployment (docs/benchmarks.md).");
        text.AppendLine();
        text.AppendLine("Usage: Parley.Bench <chat|group|connections|reconnect|relay> [options]");
        text.AppendLine();
        text.AppendLine("Scenarios:");
        text.AppendLine("  chat         users in direct pairs send at a fixed total rate; latency to the partner's socket");
        text.AppendLine("  group        groups of --group-size members; every message reaches every other member");
        text.AppendLine("  connections  idle authenticated connections opened at --connect-rate and held for --duration");
        text.AppendLine("  reconnect    devices with acks and cursors are dropped, miss messages, and resume from their cursors");
        text.AppendLine("  relay        sends nothing: watches an event sink drain its backlog on /metrics (--duration is the longest wait)");
        text.AppendLine();
        text.AppendLine("Options:");
        foreach (var spec in Specs.Where(s => s.Help is not null))
        {
            var left = $"  {spec.Name} {spec.Value}";
            text.Append(left.PadRight(34));
            if (left.Length >= 34)
            {
                text.AppendLine().Append(new string(' ', 34));
            }

            text.AppendLine(spec.Help);
        }

        text.AppendLine();
        text.AppendLine("Exit codes: 0 passed; 1 lost, duplicated, out of order, unanswered sends or failed connections; 2 bad arguments;");
        text.AppendLine("3 p99 above --max-p99-ms; 4 set-up failed (server unreachable, REST errors).");
        text.AppendLine("The last line of standard output is PARLEY_BENCH_RESULT followed by the result as JSON.");
        return text.ToString();
    }

    private static BenchOptions WithTokenKey(BenchOptions options, Func<string, string?> environment)
    {
        var key = options.TokenKey ?? environment(TokenKeyVariable);
        if (string.IsNullOrEmpty(key))
        {
            // A server run with `dotnet run` (Development) and no key accepts the documented development key.
            return options with
            {
                TokenKey = DevelopmentKey,
                TokenIssuer = options.TokenIssuer ?? DevelopmentIssuer,
                TokenAudience = options.TokenAudience ?? DevelopmentAudience,
            };
        }

        return options with { TokenKey = key };
    }

    private static string? Validate(BenchOptions o)
    {
        var units = BenchPlan.Units(o);
        if (o.Scenario == ScenarioKind.Chat && o.Users % 2 != 0)
        {
            return $"--users {o.Users}: chat needs an even number of users (they form pairs)";
        }

        if (o.Scenario == ScenarioKind.Group && (o.Users < o.GroupSize || o.Users % o.GroupSize != 0))
        {
            return $"--users {o.Users}: group needs a multiple of --group-size {o.GroupSize}";
        }

        if (o.Scenario == ScenarioKind.Relay && o.Processes > 1)
        {
            return "--processes: relay watches one server's /metrics from one process";
        }

        if (o.Processes > units)
        {
            return $"--processes {o.Processes}: more processes than {BenchPlan.UnitName(o.Scenario)} ({units})";
        }

        if (o.Auth == AuthKind.Jwt && Encoding.UTF8.GetByteCount(o.TokenKey!) < 32)
        {
            return "--token-key: an HS256 key has at least 32 bytes";
        }

        if (o.Urls.Any(u => u.Scheme is not ("http" or "https")))
        {
            return "--url: the address must start with http:// or https://";
        }

        return null;
    }

    private static IEnumerable<Uri> ParseUrls(string value)
    {
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(part.EndsWith('/') ? part : part + "/", UriKind.Absolute, out var uri))
            {
                throw new FormatException($"'{part}' is not an absolute URL");
            }

            yield return uri;
        }
    }

    private static IEnumerable<int> Pids(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => Int(p, 1, int.MaxValue));

    private static string RunId(string value) =>
        value.Length is > 0 and <= 32 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? value
            : throw new FormatException("1 to 32 of letters, digits, '-', '_' and '.'");

    private static int Int(string value, int min, int max) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new FormatException($"expected a whole number from {min} to {max}");

    private static double Number(string value, double min, double max) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && double.IsFinite(n) && n >= min && n <= max
            ? n
            : throw new FormatException($"expected a number from {min} to {max}");

    private static T Enum<T>(string value, params (string Name, T Value)[] choices)
    {
        foreach (var (name, choice) in choices)
        {
            if (string.Equals(name, value.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                return choice;
            }
        }

        throw new FormatException("expected " + string.Join(", ", choices.Select(c => c.Name)));
    }

    private sealed record Spec(string Name, string Value, string? Help, Func<BenchOptions, string, BenchOptions> Apply);
}

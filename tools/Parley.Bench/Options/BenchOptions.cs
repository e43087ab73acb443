using System.Net;

namespace Parley.Bench.Options;

internal enum ScenarioKind
{
    Chat,
    Group,
    Connections,
    Reconnect,
    Relay,
}

internal enum Transport
{
    WebSocket,
    Rest,
}

internal enum AuthKind
{
    /// <summary><c>X-User-ID</c> / <c>X-Device-ID</c>, for <c>Auth:Mode=Header</c> deployments.</summary>
    Header,

    /// <summary>HS256 tokens the tool signs itself with the deployment's key.</summary>
    Jwt,
}

/// <summary>How chat and group spread their users over several <c>--url</c>s.</summary>
internal enum Placement
{
    /// <summary>User by user, round-robin: a conversation's members on different servers where there are enough.</summary>
    Users,

    /// <summary>Conversation by conversation, round-robin: all members of a conversation on one server.</summary>
    Conversations,
}

internal enum ProgressMode
{
    Auto,
    Live,
    Plain,
    None,
}

/// <summary>Everything one run is told on its command line (docs/benchmarks.md lists each option).</summary>
internal sealed record BenchOptions
{
    public required ScenarioKind Scenario { get; init; }

    public IReadOnlyList<Uri> Urls { get; init; } = [new Uri("http://localhost:8083/")];

    /// <summary>chat, group: how users are spread over several <see cref="Urls"/>.</summary>
    public Placement Placement { get; init; } = Placement.Users;

    /// <summary>Online users (chat, group).</summary>
    public int Users { get; init; } = 1000;

    /// <summary>Messages per second over the whole run (all processes together).</summary>
    public double Rate { get; init; }

    public double DurationSeconds { get; init; }

    public double WarmupSeconds { get; init; }

    /// <summary>How long after the last send the tool waits for deliveries before it counts the missing ones as lost.</summary>
    public double GraceSeconds { get; init; } = 5;

    public int GroupSize { get; init; } = 100;

    /// <summary>relay: the event sink to watch (kafka, webhook:&lt;name&gt;).</summary>
    public string Sink { get; init; } = "kafka";

    /// <summary>Connections (connections) or devices (reconnect).</summary>
    public int Connections { get; init; } = 1000;

    /// <summary>Connections opened per second, in every scenario (all processes together).</summary>
    public double ConnectRate { get; init; } = 500;

    /// <summary>reconnect: how long the devices stay offline while messages are sent to them.</summary>
    public double OfflineSeconds { get; init; } = 10;

    /// <summary>reconnect: quiet time before the drop, so acknowledgements and cursors catch up.</summary>
    public double SettleSeconds { get; init; } = 3;

    public Transport Transport { get; init; } = Transport.WebSocket;

    /// <summary>chat, group: devices connect with <c>acks=true</c> and acknowledge what they hold this often (0: no acks).</summary>
    public double AckIntervalMs { get; init; }

    public int MessageBytes { get; init; } = 64;

    /// <summary>HTTP connections (and concurrent requests) of the REST pool.</summary>
    public int HttpConnections { get; init; } = 64;

    public AuthKind Auth { get; init; } = AuthKind.Header;

    public string? TokenKey { get; init; }

    public string? TokenIssuer { get; init; }

    public string? TokenAudience { get; init; }

    public IReadOnlyList<IPAddress> SourceAddresses { get; init; } = [];

    public int Processes { get; init; } = 1;

    public IReadOnlyList<int> ServerPids { get; init; } = [];

    /// <summary>
    /// PostgreSQL processes to measure: none, the given ones, or (<see cref="PostgresAuto"/>) one server's postmaster and its
    /// children: the only one on the machine, or the one on <see cref="PostgresPort"/> or of <see cref="PostgresDataDirectory"/>.
    /// </summary>
    public IReadOnlyList<int> PostgresPids { get; init; } = [];

    public bool PostgresAuto { get; init; }

    public int? PostgresPort { get; init; }

    public string? PostgresDataDirectory { get; init; }

    public double? MaxP99Ms { get; init; }

    public string RunId { get; init; } = NewRunId();

    public ProgressMode Progress { get; init; } = ProgressMode.Auto;

    /// <summary>Also write the result line's JSON to this file.</summary>
    public string? OutputFile { get; init; }

    /// <summary>Set on a child process: which slice of the run it carries (0-based).</summary>
    public int? ChildIndex { get; init; }

    public bool IsChild => ChildIndex is not null;

    /// <summary>A short random prefix for this run's user ids, so runs against one deployment do not collide.</summary>
    public static string NewRunId() => "b" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));

    /// <summary>The defaults that differ per scenario.</summary>
    public static (double Rate, double Duration, double Warmup) ScenarioDefaults(ScenarioKind scenario) => scenario switch
    {
        ScenarioKind.Chat => (1000, 30, 5),
        ScenarioKind.Group => (100, 30, 5),
        ScenarioKind.Connections => (0, 30, 0),
        ScenarioKind.Relay => (0, 600, 0),
        _ => (200, 10, 0),
    };
}

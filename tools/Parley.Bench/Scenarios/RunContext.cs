using System.Diagnostics;
using System.Text;
using Parley.Bench.Client;
using Parley.Bench.Options;

namespace Parley.Bench.Scenarios;

/// <summary>What every scenario of one process shares: its options and slice, the network stacks, identities and counters.</summary>
internal sealed class RunContext : IDisposable
{
    public RunContext(BenchOptions options, TextWriter status)
    {
        Options = options;
        Plan = BenchPlan.For(options);
        Network = new Network(options.SourceAddresses, options.HttpConnections);
        Identities = new Identities(options);
        Content = Encoding.ASCII.GetBytes(new string('x', options.MessageBytes));
        Status = status;
    }

    public BenchOptions Options { get; }

    public BenchPlan Plan { get; }

    public Network Network { get; }

    public Identities Identities { get; }

    /// <summary>Every message's content, UTF-8, written as is into each frame.</summary>
    public byte[] Content { get; }

    /// <summary>Set-up and phase messages for people (standard error).</summary>
    public TextWriter Status { get; }

    public ErrorCounts Errors { get; } = new();

    public ConnectionTally Connections { get; } = new();

    /// <summary>When the run (not its set-up) started, for the result.</summary>
    public DateTimeOffset StartedAt { get; set; } = DateTimeOffset.UtcNow;

    public void Log(string message)
    {
        var prefix = Options.ChildIndex is { } child ? $"[{child}] " : "";
        Status.WriteLine($"parley-bench: {prefix}{message}");
    }

    /// <summary>The WebSocket address of a device's server, with the query (device, acks, cursor).</summary>
    public static Uri SocketUri(Identity identity, bool acks, string? cursor)
    {
        ArgumentNullException.ThrowIfNull(identity);
        var builder = new UriBuilder(new Uri(identity.Server, "ws"))
        {
            Scheme = identity.Server.Scheme == "https" ? "wss" : "ws",
        };
        var query = new StringBuilder("device_id=").Append(Uri.EscapeDataString(identity.DeviceId));
        if (acks)
        {
            query.Append("&acks=true");
        }

        if (cursor is not null)
        {
            query.Append("&cursor=").Append(Uri.EscapeDataString(cursor));
        }

        builder.Query = query.ToString();
        return builder.Uri;
    }

    public void Dispose() => Network.Dispose();

    /// <summary>Seconds from <paramref name="start"/> until now.</summary>
    public static double Since(long start) => Stopwatch.GetElapsedTime(start).TotalSeconds;
}

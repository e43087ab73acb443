using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Fanout;

internal enum FanoutProvider
{
    /// <summary>One instance: frames go from the writer to this process's sockets.</summary>
    InProcess,

    /// <summary>Several instances: frames for sockets elsewhere travel through Redis pub/sub (docs/scaling.md).</summary>
    Redis,
}

internal sealed class FanoutOptions
{
    public const string SectionName = "Fanout";

    public FanoutProvider Provider { get; set; } = FanoutProvider.InProcess;

    /// <summary><c>Fanout:Redis</c>: used with <see cref="FanoutProvider.Redis"/> (checked by <see cref="FanoutOptionsValidator"/>).</summary>
    public RedisFanoutOptions Redis { get; set; } = new();
}

internal sealed class RedisFanoutOptions
{

    /// <summary>Prefix of every key and channel, so that several deployments can share one Redis.</summary>
    [RegularExpression("^[A-Za-z0-9_.-]{1,64}$")]
    public string Prefix { get; set; } = "parley";

    /// <summary>An instance whose liveness key was not refreshed for this long counts as gone (its routes are dropped).</summary>
    [Range(typeof(TimeSpan), "00:00:03", "00:10:00")]
    public TimeSpan InstanceTtl { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Publications to other instances waiting for Redis; beyond it they are dropped and counted (the cursor check is the safety net).</summary>
    [Range(100, 10_000_000)]
    public int PublishQueueCapacity { get; set; } = 10_000;

    /// <summary>How long an event waits for a missing predecessor before the gap is read from the store.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:10")]
    public TimeSpan OrderHold { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a connect waits for its route to be registered before the socket goes on without it.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:01:00")]
    public TimeSpan SubscribeTimeout { get; set; } = TimeSpan.FromSeconds(2);
}

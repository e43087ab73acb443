using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Hosting;

/// <summary>Limits that protect the service and that clients need to know (served by GET /api/v1/config).</summary>
internal sealed class LimitsOptions
{
    public const string SectionName = "Limits";

    /// <summary>Message content, in UTF-16 code units (what JavaScript's <c>length</c> counts).</summary>
    [Range(1, 65_536)]
    public int MaxContentLength { get; set; } = 4096;

    /// <summary>Largest HTTP request body; larger ones get 413.</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxRequestBytes { get; set; } = 64 * 1024;

    /// <summary>Largest WebSocket message a client may send; larger ones close the socket with 1009.</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxFrameBytes { get; set; } = 64 * 1024;

    /// <summary>Members of a group, the owner included.</summary>
    [Range(2, 100_000)]
    public int MaxGroupParticipants { get; set; } = 1000;

    [Range(0, 1000)]
    public int MaxMentions { get; set; } = 50;

    [Range(1, 1024)]
    public int MaxConversationNameLength { get; set; } = 128;

    /// <summary>How long after sending a message its sender may edit it.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "3650.00:00:00")]
    public TimeSpan EditWindow { get; set; } = TimeSpan.FromHours(48);

    /// <summary>Sustained messages per second per user (REST and WebSocket together).</summary>
    [Range(1, 100_000)]
    public int SendRatePerSecond { get; set; } = 20;

    /// <summary>Messages a user may send in a burst above the sustained rate.</summary>
    [Range(1, 1_000_000)]
    public int SendBurst { get; set; } = 100;

    /// <summary>Sustained API requests per second per caller (all endpoints).</summary>
    [Range(1, 1_000_000)]
    public int RequestRatePerSecond { get; set; } = 100;

    [Range(1, 10_000_000)]
    public int RequestBurst { get; set; } = 400;
}

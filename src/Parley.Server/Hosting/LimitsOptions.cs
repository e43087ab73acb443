using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Hosting;

/// <summary>Limits that protect the service and that clients need to know (served by GET /api/v1/config).</summary>
internal sealed partial class LimitsOptions
{
    public const string SectionName = "Limits";

    /// <summary>
    /// Room a send may need for content of <paramref name="contentLength"/> UTF-16 units: each may take 6 bytes in JSON (a
    /// client whose serializer escapes non-ASCII as <c>\uXXXX</c>, as .NET's does by default), plus 8 KiB for the rest.
    /// </summary>
    public static int BytesForContent(int contentLength) => (6 * contentLength) + (8 * 1024);

    /// <summary>
    /// Warns at start when a body or frame limit is below what content at its own limit may take: such messages would be
    /// refused with 413 or a 1009 close instead of a validation error naming the content's length.
    /// </summary>
    public void WarnIfTooSmallForContent(ILogger logger)
    {
        var needed = BytesForContent(MaxContentLength);
        foreach (var (name, value) in new[] { (nameof(MaxRequestBytes), MaxRequestBytes), (nameof(MaxFrameBytes), MaxFrameBytes) })
        {
            if (value < needed)
            {
                Log.TooSmallForContent(logger, name, value, MaxContentLength, needed);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1112, Level = LogLevel.Warning, Message = "Limits:{Name} ({Value}) may be too small for Limits:MaxContentLength ({MaxContentLength}): a message of that length may take up to {Needed} bytes (6 a character when escaped, and 8 KiB for the rest), and would then be refused as too large instead of naming its length. Raise {Name} or lower MaxContentLength")]
        public static partial void TooSmallForContent(ILogger logger, string name, int value, int maxContentLength, int needed);
    }

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

using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Presence;

internal sealed class PresenceOptions
{
    public const string SectionName = "Presence";

    /// <summary>Send <c>presence</c> events when a user comes online or goes offline (the REST lookup works either way).</summary>
    public bool Events { get; set; } = true;

    /// <summary>
    /// At most one <c>presence</c> event per user per interval: a connection that flaps sends the state it ends in,
    /// once the interval has passed, and nothing if it ends where it started.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan MinInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Presence events go to members of the user's conversations with at most this many members (direct ones included).</summary>
    [Range(2, 100_000)]
    public int MaxConversationSize { get; set; } = 100;

    /// <summary>At most this many users get one presence event.</summary>
    [Range(1, 1_000_000)]
    public int MaxRecipients { get; set; } = 5_000;
}

using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Sync;

/// <summary>Resume, cursors and the stream sequencer (docs/delivery.md).</summary>
internal sealed class DeliveryOptions
{
    public const string SectionName = "Delivery";

    /// <summary>How long a cursor can be resumed; older ones get sync_reset / 410 cursor_expired. At least 30 days by design.</summary>
    [Range(typeof(TimeSpan), "30.00:00:00", "10675199.02:48:05.4775807")]
    public TimeSpan CursorRetention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>How often a connected device gets a fresh cursor while sequenced events flow.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:05:00")]
    public TimeSpan CursorInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long live events wait for a connection's first frame (which may be <c>resume</c>) when it has no cursor.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:30")]
    public TimeSpan FirstFrameWait { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the sequencer positions new events.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:00:10")]
    public TimeSpan SequencerInterval { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Events positioned per sequencer transaction.</summary>
    [Range(10, 1_000_000)]
    public int SequencerBatch { get; set; } = 5000;

    /// <summary>Events read per catch-up query.</summary>
    [Range(10, 100_000)]
    public int CatchUpPage { get; set; } = 500;
}

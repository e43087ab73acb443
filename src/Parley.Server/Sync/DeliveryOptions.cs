using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Parley.Server.Sync;

/// <summary>Resume, cursors and the stream sequencer (docs/delivery.md).</summary>
internal sealed class DeliveryOptions
{
    public const string SectionName = "Delivery";

    /// <summary>How long a cursor can be resumed; older ones get sync_reset / 410 cursor_expired. At least 30 days by design.</summary>
    public TimeSpan CursorRetention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>How often a connected device gets a fresh cursor while sequenced events flow.</summary>
    public TimeSpan CursorInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long live events wait for a connection's first frame (which may be <c>resume</c>) when it has no cursor.</summary>
    public TimeSpan FirstFrameWait { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the sequencer positions new events.</summary>
    public TimeSpan SequencerInterval { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Events positioned per sequencer transaction.</summary>
    [Range(10, 1_000_000)]
    public int SequencerBatch { get; set; } = 5000;

    /// <summary>Events read per catch-up query.</summary>
    [Range(10, 100_000)]
    public int CatchUpPage { get; set; } = 500;
}

internal sealed class DeliveryOptionsValidator : IValidateOptions<DeliveryOptions>
{
    public ValidateOptionsResult Validate(string? name, DeliveryOptions options)
    {
        var failures = new List<string>();
        if (options.CursorRetention < TimeSpan.FromDays(30))
        {
            failures.Add("Delivery:CursorRetention must be at least 30 days.");
        }

        if (options.CursorInterval < TimeSpan.FromMilliseconds(100) || options.CursorInterval > TimeSpan.FromMinutes(5))
        {
            failures.Add("Delivery:CursorInterval must be between 00:00:00.1 and 00:05:00.");
        }

        if (options.FirstFrameWait < TimeSpan.Zero || options.FirstFrameWait > TimeSpan.FromSeconds(30))
        {
            failures.Add("Delivery:FirstFrameWait must be between 0 and 00:00:30.");
        }

        if (options.SequencerInterval < TimeSpan.FromMilliseconds(1) || options.SequencerInterval > TimeSpan.FromSeconds(10))
        {
            failures.Add("Delivery:SequencerInterval must be between 00:00:00.001 and 00:00:10.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

using Microsoft.Extensions.Options;
using Parley.Server.Realtime;

namespace Parley.Server.Hosting;

/// <summary>Rules DataAnnotations cannot express (durations), checked at start-up with the key to fix in the message.</summary>
internal sealed class LimitsOptionsValidator : IValidateOptions<LimitsOptions>
{
    public ValidateOptionsResult Validate(string? name, LimitsOptions options) =>
        options.EditWindow < TimeSpan.Zero || options.EditWindow > TimeSpan.FromDays(3650)
            ? ValidateOptionsResult.Fail("Limits:EditWindow must be between 00:00:00 and 3650 days.")
            : ValidateOptionsResult.Success;
}

internal sealed class RealtimeOptionsValidator : IValidateOptions<RealtimeOptions>
{
    public ValidateOptionsResult Validate(string? name, RealtimeOptions options)
    {
        var failures = new List<string>();
        Check(failures, "Realtime:HeartbeatInterval", options.HeartbeatInterval, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));
        Check(failures, "Realtime:HeartbeatTimeout", options.HeartbeatTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));
        Check(failures, "Realtime:SendTimeout", options.SendTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
        Check(failures, "Realtime:CloseTimeout", options.CloseTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1));
        Check(failures, "Realtime:TypingTimeout", options.TypingTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
        Check(failures, "Realtime:DeliveryFlushInterval", options.DeliveryFlushInterval, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(10));
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void Check(List<string> failures, string key, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
        {
            failures.Add($"{key} must be between {min} and {max} (got {value}).");
        }
    }
}

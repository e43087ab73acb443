using Microsoft.Extensions.Options;
using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Messages;
using Parley.Server.Protocol;
using Parley.Server.Realtime;

namespace Parley.Server.App;

internal static class ConfigApi
{
    public static IEndpointRouteBuilder MapClientConfig(this IEndpointRouteBuilder app)
    {
        app.MapRead("/api/v1/config", (IOptions<LimitsOptions> limits, IOptions<RealtimeOptions> realtime) =>
        {
            var l = limits.Value;
            var r = realtime.Value;
            return TypedResults.Ok(new ClientConfig(
                l.MaxContentLength,
                (long)l.EditWindow.TotalSeconds,
                l.MaxRequestBytes,
                l.MaxFrameBytes,
                l.MaxGroupParticipants,
                l.MaxMentions,
                l.MaxConversationNameLength,
                Math.Max(MessageService.MaxPageSize, ConversationService.MaxPageSize),
                (long)r.HeartbeatInterval.TotalMilliseconds,
                (long)r.TypingTimeout.TotalMilliseconds,
                l.SendRatePerSecond,
                l.SendBurst,
                r.TypingMaxConversationSize));
        })
        .WithTags("Config")
        .WithSummary("Limits clients need: content length, edit window, sizes, rates")
        .AllowAnonymous()
        // Configuration only: it answers while the database starts or is down, so clients can still read their limits.
        .NeedsNoStorage();
        return app;
    }
}

using Microsoft.Extensions.Options;
using Parley.Server.Conversations;
using Parley.Server.Fanout;
using Parley.Server.Messages;
using Parley.Server.Presence;
using Parley.Server.Realtime.Protocol;
using Parley.Server.Receipts;

namespace Parley.Server.Realtime;

internal static class RealtimeSetup
{
    public static IHostApplicationBuilder AddRealtime(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<RealtimeOptions>().BindConfiguration(RealtimeOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ConnectionHub>();
        services.AddSingleton<IFanout, InProcessFanout>();
        services.AddSingleton<ConversationBroadcaster>();
        services.AddSingleton<FrameDispatcher>();
        services.AddHostedService<GracefulClose>();
        return builder;
    }

    /// <summary>The conversation, message, receipt and typing features.</summary>
    public static IHostApplicationBuilder AddMessaging(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<ConversationLocks>();
        services.AddSingleton<ConversationAccess>();
        services.AddSingleton<ConversationService>();
        services.AddSingleton<MessageService>();
        services.AddSingleton<ReceiptService>();
        services.AddSingleton<DeliveryTracker>();
        services.AddHostedService(sp => sp.GetRequiredService<DeliveryTracker>());
        services.AddSingleton<TypingTracker>();
        services.AddHostedService(sp => sp.GetRequiredService<TypingTracker>());
        return builder;
    }

    /// <summary>
    /// On shutdown every socket is asked to close with 1001 as soon as stopping begins; the server then waits
    /// (up to its shutdown timeout) for the WebSocket requests to finish their close handshakes.
    /// </summary>
    private sealed class GracefulClose(ConnectionHub hub, IHostApplicationLifetime lifetime, IOptions<RealtimeOptions> options) : IHostedService
    {
        private CancellationTokenRegistration _registration;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            _registration = lifetime.ApplicationStopping.Register(() =>
                _ = hub.CloseAllAsync(CloseCodes.GoingAway, "server shutting down", options.Value.CloseTimeout));
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) =>
            hub.CloseAllAsync(CloseCodes.GoingAway, "server shutting down", options.Value.CloseTimeout);
    }
}

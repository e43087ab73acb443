using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Presence;

/// <summary>
/// Who is typing where, in memory. A user's indicator is per conversation (not per device): the first
/// <c>is_typing: true</c> is broadcast, refreshes only extend it, and it ends with <c>is_typing: false</c>,
/// a sent message, or expiry (<see cref="RealtimeOptions.TypingTimeout"/> without a refresh), each broadcast
/// once to the other members; an instance that stops ends the indicators it holds.
/// </summary>
internal sealed partial class TypingTracker(
    IChatStore store, ConversationBroadcaster broadcaster, TimeProvider time, IOptions<RealtimeOptions> options, ILogger<TypingTracker> logger)
    : BackgroundService
{
    // Each indicator's expiry, and the members told it started (told it ended if this instance stops).
    private readonly ConcurrentDictionary<(Guid ConversationId, string UserId), Indicator> _expiries = new();

    public int ActiveCount => _expiries.Count;

    /// <summary>REST and WebSocket typing: members only (others get 404, like every conversation endpoint).</summary>
    public async Task<ApiError?> UpdateAsync(Caller caller, Guid conversationId, bool isTyping, CancellationToken cancellationToken)
    {
        var snapshot = await store.GetConversationAsync(conversationId, cancellationToken);
        if (snapshot?.Find(caller.UserId) is null)
        {
            return ApiError.NotFound("Conversation");
        }

        await SetAsync(conversationId, caller.UserId, isTyping, snapshot.Members);
        return null;
    }

    private async Task SetAsync(Guid conversationId, string userId, bool isTyping, IReadOnlyList<MemberRecord> members)
    {
        var key = (conversationId, userId);
        if (isTyping)
        {
            var indicator = new Indicator(time.GetUtcNow() + options.Value.TypingTimeout, members);
            if (_expiries.TryAdd(key, indicator))
            {
                await broadcaster.TypingAsync(conversationId, userId, true, members);
            }
            else
            {
                _expiries[key] = indicator;
            }
        }
        else
        {
            await StopAsync(conversationId, userId, members);
        }
    }

    public async Task StopAsync(Guid conversationId, string userId, IReadOnlyList<MemberRecord> members)
    {
        if (_expiries.TryRemove((conversationId, userId), out _))
        {
            await broadcaster.TypingAsync(conversationId, userId, false, members);
        }
    }

    /// <summary>Expires indicators that were not refreshed in time (checked four times per timeout).</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.TypingTimeout / 4;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var now = time.GetUtcNow();
            foreach (var entry in _expiries)
            {
                // Remove only if not refreshed meanwhile (the value still is the one we saw expire).
                if (entry.Value.Expiry <= now && _expiries.TryRemove(entry))
                {
                    await ExpireAsync(entry.Key.ConversationId, entry.Key.UserId, stoppingToken);
                }
            }
        }
    }

    /// <summary>
    /// Stopping: every indicator this instance holds ends now. The members told it started (on other instances too) would
    /// otherwise show it for good: "true" is broadcast once, and only this instance would ever say "false".
    /// </summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        foreach (var entry in _expiries)
        {
            // To the members it went to, without a store read: handed to the fan-out at once, before it stops.
            if (!_expiries.TryRemove(entry))
            {
                continue;
            }

            try
            {
                await broadcaster.TypingAsync(entry.Key.ConversationId, entry.Key.UserId, false, entry.Value.Members);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ExpiryBroadcastFailed(logger, entry.Key.ConversationId, entry.Key.UserId, ex);
            }
        }
    }

    private sealed record Indicator(DateTimeOffset Expiry, IReadOnlyList<MemberRecord> Members);

    private async Task ExpireAsync(Guid conversationId, string userId, CancellationToken cancellationToken)
    {
        try
        {
            var snapshot = await store.GetConversationAsync(conversationId, cancellationToken);
            // Started again while the members were read: its "true" went out after this expiry began, and a "false" now
            // would end an indicator the server still holds.
            if (snapshot is not null && !_expiries.ContainsKey((conversationId, userId)))
            {
                await broadcaster.TypingAsync(conversationId, userId, false, snapshot.Members);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The indicator is gone either way; clients also drop indicators they stop hearing about.
            Log.ExpiryBroadcastFailed(logger, conversationId, userId, ex);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Could not broadcast typing expiry of {UserId} in {ConversationId}")]
        public static partial void ExpiryBroadcastFailed(ILogger logger, Guid conversationId, string userId, Exception exception);
    }
}

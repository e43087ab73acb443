using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Presence;

/// <summary>
/// Who is typing where. A user's indicator is per conversation (not per device): the first <c>is_typing: true</c> is
/// broadcast, refreshes only extend it, and it ends with <c>is_typing: false</c>, a sent message, or expiry
/// (<see cref="RealtimeOptions.TypingTimeout"/> without a refresh), each broadcast once to the other members. Whether it
/// is on is the fan-out's to say (<see cref="IFanout.StartTypingAsync"/>: across instances with Redis, so a refresh or a
/// stop that reaches another instance is not a second start or a lost end); this class watches the indicators whose
/// frames reached this instance and checks each at the end of its timeout. An instance that stops ends those it watches.
/// </summary>
internal sealed partial class TypingTracker(
    IChatStore store, IFanout fanout, ConversationBroadcaster broadcaster, TimeProvider time, IOptions<RealtimeOptions> options, ILogger<TypingTracker> logger)
    : BackgroundService
{
    // The indicators this instance saw, each with when to check it and the members told it started (told it ended if this
    // instance stops).
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

        if (isTyping)
        {
            var timeout = options.Value.TypingTimeout;
            _expiries[(conversationId, caller.UserId)] = new Indicator(time.GetUtcNow() + timeout, snapshot.Members);
            if (await fanout.StartTypingAsync(conversationId, caller.UserId, timeout, cancellationToken))
            {
                await broadcaster.TypingAsync(conversationId, caller.UserId, true, snapshot.Members);
            }
        }
        else
        {
            await StopAsync(conversationId, caller.UserId, snapshot.Members);
        }

        return null;
    }

    public async Task StopAsync(Guid conversationId, string userId, IReadOnlyList<MemberRecord> members)
    {
        _expiries.TryRemove((conversationId, userId), out _);
        if (await fanout.StopTypingAsync(conversationId, userId))
        {
            await broadcaster.TypingAsync(conversationId, userId, false, members);
        }
    }

    /// <summary>
    /// A message from the user, or their removal from the conversation, ends their indicator: started here, finished in
    /// the background (with Redis a round trip the caller's answer does not depend on), never throws.
    /// </summary>
    public void End(Guid conversationId, string userId, IReadOnlyList<MemberRecord> members)
    {
        var ending = StopAsync(conversationId, userId, members);
        if (!ending.IsCompletedSuccessfully)
        {
            _ = ending.ContinueWith(
                done => Log.EndFailed(logger, conversationId, userId, done.Exception!),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>Checks the indicators whose timeout passed as this instance knows it (four times per timeout).</summary>
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
                // Only if not refreshed here meanwhile (the value still is the one we saw expire).
                if (entry.Value.Expiry <= now && _expiries.TryRemove(entry))
                {
                    await CheckAsync(entry.Key.ConversationId, entry.Key.UserId, entry.Value.Members, stoppingToken);
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
                if (await fanout.StopTypingAsync(entry.Key.ConversationId, entry.Key.UserId))
                {
                    await broadcaster.TypingAsync(entry.Key.ConversationId, entry.Key.UserId, false, entry.Value.Members);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ExpiryBroadcastFailed(logger, entry.Key.ConversationId, entry.Key.UserId, ex);
            }
        }
    }

    private sealed record Indicator(DateTimeOffset Expiry, IReadOnlyList<MemberRecord> Members);

    private async Task CheckAsync(Guid conversationId, string userId, IReadOnlyList<MemberRecord> members, CancellationToken cancellationToken)
    {
        try
        {
            var check = await fanout.CheckTypingAsync(conversationId, userId);
            if (check.Outcome == TypingOutcome.Refreshed)
            {
                // Refreshed through another instance: looked at again when that refresh runs out (unless refreshed here).
                _expiries.TryAdd((conversationId, userId), new Indicator(time.GetUtcNow() + check.Remaining, members));
                return;
            }

            if (check.Outcome != TypingOutcome.Ended)
            {
                return;
            }

            var snapshot = await store.GetConversationAsync(conversationId, cancellationToken);
            // Started again here while the members were read: its "true" went out after this expiry began, and a
            // "false" now would end an indicator the server still holds.
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

        [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Could not end the typing indicator of {UserId} in {ConversationId}")]
        public static partial void EndFailed(ILogger logger, Guid conversationId, string userId, Exception exception);
    }
}

using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Conversations;
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
internal sealed partial class TypingTracker : BackgroundService
{
    private readonly IChatStore _store;
    private readonly IFanout _fanout;
    private readonly ConversationBroadcaster _broadcaster;
    private readonly TimeProvider _time;
    private readonly IOptions<RealtimeOptions> _options;
    private readonly ILogger<TypingTracker> _logger;

    public TypingTracker(
        IChatStore store, IFanout fanout, ConversationBroadcaster broadcaster, MembershipRemovals removals, TimeProvider time,
        IOptions<RealtimeOptions> options, ILogger<TypingTracker> logger)
    {
        (_store, _fanout, _broadcaster, _time, _options, _logger) = (store, fanout, broadcaster, time, options, logger);

        // A member who is gone types no more: the others need not wait for the indicator to expire.
        removals.Subscribe(End);
    }

    // The indicators this instance saw, each with when to check it and the members told it started (told it ended if this
    // instance stops).
    private readonly ConcurrentDictionary<(Guid ConversationId, string UserId), Indicator> _expiries = new();

    public int ActiveCount => _expiries.Count;

    /// <summary>REST and WebSocket typing: members only (others get 404, like every conversation endpoint).</summary>
    public async Task<ApiError?> UpdateAsync(Caller caller, Guid conversationId, bool isTyping, CancellationToken cancellationToken)
    {
        var snapshot = await _store.GetConversationAsync(conversationId, cancellationToken);
        if (snapshot?.Find(caller.UserId) is null)
        {
            return ApiError.NotFound("Conversation");
        }

        if (isTyping && snapshot.Members.Count > _options.Value.TypingMaxConversationSize)
        {
            // Too large a group for indicators: accepted, not broadcast. (A stop still ends one started before the
            // group grew past the limit.)
            return null;
        }

        if (isTyping)
        {
            var key = (conversationId, caller.UserId);
            var stripe = Stripe(key);
            await stripe.WaitAsync(cancellationToken);
            try
            {
                var timeout = _options.Value.TypingTimeout;
                var started = await _fanout.StartTypingAsync(conversationId, caller.UserId, timeout, cancellationToken);
                _expiries[key] = new Indicator(_time.GetUtcNow() + timeout, snapshot.Members);
                if (started)
                {
                    await _broadcaster.TypingAsync(conversationId, caller.UserId, true, snapshot.Members);
                }
            }
            finally
            {
                stripe.Release();
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
        var key = (conversationId, userId);
        var stripe = Stripe(key);
        await stripe.WaitAsync(CancellationToken.None);
        try
        {
            var seenHere = _expiries.TryRemove(key, out _);
            if (await _fanout.StopTypingAsync(conversationId, userId, seenHere))
            {
                await _broadcaster.TypingAsync(conversationId, userId, false, members);
            }
        }
        finally
        {
            stripe.Release();
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
                done => Log.EndFailed(_logger, conversationId, userId, done.Exception!),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>Checks the indicators whose timeout passed as this instance knows it (four times per timeout).</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = _options.Value.TypingTimeout / 4;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval, _time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var now = _time.GetUtcNow();
            foreach (var entry in _expiries)
            {
                if (entry.Value.Expiry > now)
                {
                    continue;
                }

                var stripe = Stripe(entry.Key);
                await stripe.WaitAsync(stoppingToken);
                try
                {
                    // Only if not refreshed or stopped here meanwhile (the value still is the one we saw expire).
                    if (_expiries.TryRemove(entry))
                    {
                        await CheckAsync(entry.Key.ConversationId, entry.Key.UserId, entry.Value.Members, stoppingToken);
                    }
                }
                finally
                {
                    stripe.Release();
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
        var clearing = new List<Task>();
        foreach (var entry in _expiries)
        {
            if (!_expiries.TryRemove(entry))
            {
                continue;
            }

            var (conversationId, userId) = entry.Key;
            try
            {
                // The end first, to the members it went to, without a store read or a wait for Redis: handed to the fan-out
                // at once, before it stops. Then the shared state, which an instance that saw the indicator may end this way.
                await _broadcaster.TypingAsync(conversationId, userId, false, entry.Value.Members);
                clearing.Add(_fanout.StopTypingAsync(conversationId, userId, seenHere: true).AsTask());
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ExpiryBroadcastFailed(_logger, conversationId, userId, ex);
            }
        }

        // All at once (each may wait for Redis), within the host's shutdown timeout. The fan-out never throws.
        await Task.WhenAll(clearing).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    // One indicator's start, stop and check run one at a time on this instance, so that its "true" and "false" leave in
    // the order they were decided and the watch below never misses a start. Striped: the indicators are many.
    private readonly SemaphoreSlim[] _stripes = [.. Enumerable.Range(0, 64).Select(_ => new SemaphoreSlim(1, 1))];

    private SemaphoreSlim Stripe((Guid ConversationId, string UserId) key) =>
        _stripes[(int)((uint)HashCode.Combine(key.ConversationId, key.UserId) % (uint)_stripes.Length)];

    private sealed record Indicator(DateTimeOffset Expiry, IReadOnlyList<MemberRecord> Members);

    private async Task CheckAsync(Guid conversationId, string userId, IReadOnlyList<MemberRecord> members, CancellationToken cancellationToken)
    {
        try
        {
            var check = await _fanout.CheckTypingAsync(conversationId, userId);
            if (check.Outcome == TypingOutcome.Refreshed)
            {
                // Refreshed through another instance: looked at again when that refresh runs out (unless refreshed here).
                _expiries.TryAdd((conversationId, userId), new Indicator(_time.GetUtcNow() + check.Remaining, members));
                return;
            }

            if (check.Outcome != TypingOutcome.Ended)
            {
                return;
            }

            // A start here meanwhile waits for this check (the indicator's stripe): this "false" goes out before its "true".
            var snapshot = await _store.GetConversationAsync(conversationId, cancellationToken);
            if (snapshot is not null)
            {
                await _broadcaster.TypingAsync(conversationId, userId, false, snapshot.Members);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The indicator is gone either way; clients also drop indicators they stop hearing about.
            Log.ExpiryBroadcastFailed(_logger, conversationId, userId, ex);
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

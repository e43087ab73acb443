using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Presence;

/// <summary>
/// Who is online: a user is online while any of their devices is connected to any instance (the fan-out knows, across
/// instances through Redis), and was last seen when the last one disconnected. Transitions are announced to the users
/// who share a small enough conversation with the user (<see cref="PresenceOptions"/>), at most once per interval per
/// user; the lookup answers only users who share a conversation with the caller.
/// </summary>
internal sealed partial class PresenceService(
    IFanout fanout,
    IChatStore store,
    ConversationBroadcaster broadcaster,
    TimeProvider time,
    IOptions<PresenceOptions> options,
    ILogger<PresenceService> logger) : IHostedService, IDisposable
{
    private readonly Dictionary<string, Announcement> _announcements = new(StringComparer.Ordinal);

    // Announcements on their way (contacts read, then handed to the fan-out): a stop waits for them.
    private readonly ConcurrentDictionary<Task, bool> _publishing = new();
    private bool _stopped;
    private readonly Lock _lock = new();
    private long _nextSweep;

    /// <summary>
    /// A socket of the user connected here: routes it (see <see cref="IFanout.SubscribeAsync"/>) and announces a user who
    /// came online. Returns the last seq of each of the user's conversations when the fan-out read them after routing.
    /// </summary>
    public async Task<IReadOnlyDictionary<Guid, long>?> ConnectedAsync(string userId, CancellationToken cancellationToken)
    {
        var subscription = await fanout.SubscribeAsync(userId, cancellationToken);
        if (subscription.CameOnline)
        {
            Announce(userId, online: true, lastSeenAt: null);
        }

        return subscription.LastSeqs;
    }

    /// <summary>A socket of the user left: announces a user whose last device anywhere it was.</summary>
    public async Task DisconnectedAsync(string userId)
    {
        if (await fanout.UnsubscribeAsync(userId))
        {
            Announce(userId, online: false, lastSeenAt: time.GetUtcNow());
        }
    }

    public async Task<Result<UserPresenceView>> GetAsync(Caller caller, string userId, CancellationToken cancellationToken)
    {
        if (!Identifiers.IsValidUserId(userId))
        {
            return ApiError.Invalid("user_id", Identifiers.UserIdRule);
        }

        // Only users the caller shares a conversation with: anyone else is not the caller's to watch (and looks unknown).
        if (userId != caller.UserId && !await store.SharesConversationAsync(caller.UserId, userId, cancellationToken))
        {
            return ApiError.NotFound("User");
        }

        var presence = (await fanout.GetPresenceAsync([userId], cancellationToken))[userId];
        return new UserPresenceView(userId, presence.Online, presence.LastSeenAt);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Stopping (after the sockets closed, before the fan-out stops): the announcements of the users who left with them
    /// are handed to the fan-out, or their contacts would never learn that they went offline.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            // Those waiting out their interval go now: a user who came online shortly before and left with the sockets
            // would otherwise stay online, the timer gone with this instance.
            _stopped = true;
            var now = time.GetTimestamp();
            foreach (var (userId, announcement) in _announcements)
            {
                if (announcement.Deferred is not null)
                {
                    SendDeferred(userId, announcement, now);
                }
            }
        }

        await Task.WhenAll(_publishing.Keys).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var announcement in _announcements.Values)
            {
                announcement.Deferred?.Dispose();
            }

            _announcements.Clear();
        }
    }

    private void Announce(string userId, bool online, DateTimeOffset? lastSeenAt)
    {
        var settings = options.Value;
        if (!settings.Events)
        {
            return;
        }

        lock (_lock)
        {
            var now = time.GetTimestamp();
            ForgetOld(now, settings.MinInterval);
            if (!_announcements.TryGetValue(userId, out var announcement))
            {
                _announcements[userId] = announcement = new Announcement();
            }

            announcement.Online = online;
            announcement.LastSeenAt = lastSeenAt;
            if (announcement.Deferred is not null)
            {
                return; // the deferred send takes the latest state
            }

            var wait = announcement.SentAt == 0 || _stopped ? TimeSpan.Zero : settings.MinInterval - time.GetElapsedTime(announcement.SentAt, now);
            if (wait <= TimeSpan.Zero)
            {
                Send(userId, announcement, now);
            }
            else
            {
                announcement.Deferred = time.CreateTimer(_ => SendDeferred(userId), null, wait, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private void SendDeferred(string userId)
    {
        lock (_lock)
        {
            if (_announcements.TryGetValue(userId, out var announcement))
            {
                SendDeferred(userId, announcement, time.GetTimestamp());
            }
        }
    }

    /// <summary>Called under the lock: the deferred announcement goes, if the user ended in another state than announced.</summary>
    private void SendDeferred(string userId, Announcement announcement, long now)
    {
        announcement.Deferred?.Dispose();
        announcement.Deferred = null;
        if (announcement.Online != announcement.SentOnline)
        {
            Send(userId, announcement, now);
        }
    }

    /// <summary>Called under the lock; the store read and the publication run outside it, on the thread pool.</summary>
    private void Send(string userId, Announcement announcement, long now)
    {
        announcement.SentAt = now;
        announcement.SentOnline = announcement.Online;
        var (online, lastSeenAt) = (announcement.Online, announcement.LastSeenAt);
        var publishing = PublishAsync(userId, online, lastSeenAt);
        if (!publishing.IsCompleted)
        {
            _publishing[publishing] = true;
            _ = publishing.ContinueWith(done => _publishing.TryRemove(done, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task PublishAsync(string userId, bool online, DateTimeOffset? lastSeenAt)
    {
        // Off the caller's thread before the first read: with SQLite and the in-process fan-out nothing below awaits
        // anything, so it would otherwise run under the service's lock (every other connect and disconnect waiting on
        // one user's contacts query and delivery) and inside the connect that announced it.
        await Task.Yield();
        try
        {
            // This instance announces what it saw, and another may have seen a later change: a user who left here and
            // came back through another instance (a page reloaded behind a load balancer) within the interval is online,
            // and announcing the deferred "offline" would show them offline until their next change. Only the state the
            // fan-out holds now goes out; a change seen elsewhere is announced by the instance that saw it.
            var current = (await fanout.GetPresenceAsync([userId], CancellationToken.None))[userId];
            if (current.Online != online)
            {
                Superseded(userId, online);
                return;
            }

            lastSeenAt = online ? null : current.LastSeenAt ?? lastSeenAt;
            var settings = options.Value;
            var recipients = await store.ListContactsAsync(userId, settings.MaxConversationSize, settings.MaxRecipients, CancellationToken.None);
            if (recipients.Count > 0)
            {
                await broadcaster.PresenceAsync(userId, online, lastSeenAt, recipients);
            }
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            // A missed presence event is corrected by the next one, and the lookup answers from the fan-out itself.
            Log.AnnounceFailed(logger, userId, ex.Message);
        }
    }

    /// <summary>
    /// An announcement found the user in the other state, which the instance that saw it announces: what contacts heard
    /// last is not this instance's to know any more (that instance may announce again meanwhile). Forgotten, so that
    /// this instance's next change for the user goes out at once and the fan-out's state decides it.
    /// </summary>
    private void Superseded(string userId, bool announced)
    {
        lock (_lock)
        {
            if (_announcements.TryGetValue(userId, out var announcement) && announcement.SentOnline == announced && announcement.Deferred is null)
            {
                _announcements.Remove(userId);
            }
        }
    }

    /// <summary>
    /// Drops announcements whose interval is over (nothing deferred): the table holds only recent ones. A sweep walks the
    /// whole table under the lock, so it runs at most once a <see cref="PresenceOptions.MinInterval"/> (at least a
    /// second): run on every announcement, a reconnect storm of 15,000 users walked 15,000 entries per connect.
    /// </summary>
    private void ForgetOld(long now, TimeSpan interval)
    {
        if (_announcements.Count < 1024 || now < _nextSweep)
        {
            return;
        }

        var period = interval > TimeSpan.FromSeconds(1) ? interval : TimeSpan.FromSeconds(1);
        _nextSweep = now + (long)(period.TotalSeconds * time.TimestampFrequency);
        foreach (var (userId, announcement) in _announcements)
        {
            if (announcement.Deferred is null && time.GetElapsedTime(announcement.SentAt, now) >= interval)
            {
                _announcements.Remove(userId); // allowed while enumerating a Dictionary
            }
        }
    }

    /// <summary>Users with a recent or deferred announcement (tests: the table stays bounded).</summary>
    internal int Tracked
    {
        get
        {
            lock (_lock)
            {
                return _announcements.Count;
            }
        }
    }

    private sealed class Announcement
    {
        public bool Online;
        public DateTimeOffset? LastSeenAt;
        public long SentAt;
        public bool SentOnline;
        public ITimer? Deferred;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7201, Level = LogLevel.Warning, Message = "Presence of {UserId} not announced: {Reason}")]
        public static partial void AnnounceFailed(ILogger logger, string userId, string reason);
    }
}

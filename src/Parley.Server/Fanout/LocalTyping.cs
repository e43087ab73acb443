namespace Parley.Server.Fanout;

/// <summary>
/// Typing indicators' state in this process (<see cref="IFanout.StartTypingAsync"/> and the two after it): the
/// in-process fan-out's, and the Redis fan-out's while Redis is unreachable. One deadline per conversation and user.
/// </summary>
internal sealed class LocalTyping(TimeProvider time)
{
    private readonly Dictionary<(Guid ConversationId, string UserId), DateTimeOffset> _deadlines = [];
    private readonly Lock _lock = new();

    public bool Start(Guid conversationId, string userId, TimeSpan timeout)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            // One past its deadline but not yet checked has ended for everyone: starting it again is a start.
            var wasOn = _deadlines.TryGetValue((conversationId, userId), out var deadline) && deadline > now;
            _deadlines[(conversationId, userId)] = now + timeout;
            return !wasOn;
        }
    }

    public bool Stop(Guid conversationId, string userId)
    {
        lock (_lock)
        {
            return _deadlines.Remove((conversationId, userId));
        }
    }

    public TypingCheck Check(Guid conversationId, string userId)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_deadlines.TryGetValue((conversationId, userId), out var deadline))
            {
                return TypingCheck.Gone;
            }

            if (deadline > now)
            {
                return TypingCheck.RefreshedFor(deadline - now);
            }

            _deadlines.Remove((conversationId, userId));
            return TypingCheck.Ended;
        }
    }
}

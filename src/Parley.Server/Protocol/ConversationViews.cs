using Parley.Server.Storage;

namespace Parley.Server.Protocol;

internal static class ConversationViews
{
    /// <summary>The conversation as <paramref name="caller"/> sees it (null for the service role: no personal state).</summary>
    public static Conversation ToView(ConversationSnapshot snapshot, MemberRecord? caller, Message? lastMessage)
    {
        var c = snapshot.Conversation;
        // Members see history from their joining: a last message from before it is not theirs to see.
        var visibleLast = lastMessage is not null && (caller is null || lastMessage.Seq > caller.JoinedSeq) ? lastMessage : null;
        return new Conversation(
            c.Id,
            c.Type,
            c.Name,
            c.CreatedBy,
            c.CreatedAt,
            caller?.LastActivityAt ?? c.LastActivityAt,
            c.LastSeq,
            snapshot.Members.Select(m => new Participant(m.UserId, m.Role, m.JoinedAt)).ToList(),
            visibleLast,
            caller?.UnreadCount ?? 0,
            caller?.ReadSeq ?? 0,
            caller?.ReadMessageId);
    }

    /// <summary>The conversation as it was at a past seq (for a former member's replay): no personal state, no last message.</summary>
    public static Conversation ToView(ConversationAsOf then)
    {
        var c = then.Conversation;
        var participants = then.Participants.Select(p => new Participant(p.UserId, p.Role, p.JoinedAt)).ToList();
        return new Conversation(c.Id, c.Type, c.Name, c.CreatedBy, c.CreatedAt, c.LastActivityAt, c.LastSeq, participants, null, 0, 0, null);
    }
}

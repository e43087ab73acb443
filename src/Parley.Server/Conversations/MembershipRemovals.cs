using Parley.Server.Storage;

namespace Parley.Server.Conversations;

/// <summary>
/// Members removed from (or leaving) a conversation, for the features above this folder that act on it (a typing
/// indicator ends at once) without this folder depending on them. Handlers run after the removal was broadcast and must
/// not throw or wait.
/// </summary>
internal sealed class MembershipRemovals
{
    private Action<Guid, string, IReadOnlyList<MemberRecord>>? _handlers;

    /// <summary>Adds a handler: the conversation, the removed user, and the members after the removal.</summary>
    public void Subscribe(Action<Guid, string, IReadOnlyList<MemberRecord>> handler) => _handlers += handler;

    public void Removed(Guid conversationId, string userId, IReadOnlyList<MemberRecord> remaining) =>
        _handlers?.Invoke(conversationId, userId, remaining);
}

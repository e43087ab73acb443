using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Conversations;

/// <summary>
/// Who may change a group's members and roles, and what a change does (ownership transfer, a successor when the
/// owner leaves). Pure functions of the conversation as the store read it inside the change's transaction.
/// </summary>
internal static class MembershipRules
{
    /// <summary>Adding members: a manager adds the users not yet in the group, within the group's size limit.</summary>
    public static StoreResult<IReadOnlyList<MembershipChange>, ApiError> DecideAdditions(
        Caller caller, ConversationSnapshot snapshot, IReadOnlyList<string> userIds, int maxParticipants)
    {
        if (RequireManager(caller, snapshot) is { } denied)
        {
            return denied;
        }

        var added = userIds.Where(u => snapshot.Find(u) is null).ToList();
        if (snapshot.Members.Count + added.Count > maxParticipants)
        {
            return ApiError.Conflict(ErrorCodes.ParticipantLimit, $"A group has at most {maxParticipants} participants.");
        }

        return added.Select(u => (MembershipChange)new MembershipChange.Add(u, Roles.Member)).ToList();
    }

    /// <summary>Non-members get 404; direct conversations have fixed members; only owners and admins (and the service) manage.</summary>
    private static ApiError? RequireManager(Caller caller, ConversationSnapshot snapshot)
    {
        var actor = snapshot.Find(caller.UserId);
        if (actor is null && !caller.IsService)
        {
            return ApiError.NotFound("Conversation");
        }

        if (snapshot.Conversation.Type == ConversationTypes.Direct)
        {
            return ApiError.Conflict(ErrorCodes.DirectConversation, "A direct conversation's members cannot change.");
        }

        return caller.IsService || Roles.CanManage(actor!.Role) ? null : ApiError.Forbidden("Only the group's owner and admins may manage members.");
    }

    public static StoreResult<IReadOnlyList<MembershipChange>, ApiError> DecideRoleChange(Caller caller, ConversationSnapshot snapshot, string userId, string role)
    {
        if (RequireManager(caller, snapshot) is { } denied)
        {
            return denied;
        }

        var target = snapshot.Find(userId);
        if (target is null)
        {
            return ApiError.NotFound("Participant");
        }

        if (target.Role == role)
        {
            return Array.Empty<MembershipChange>();
        }

        var actor = snapshot.Find(caller.UserId);
        var owner = snapshot.Members.FirstOrDefault(m => m.Role == Roles.Owner);
        if (role == Roles.Owner)
        {
            // Transfer: one owner at a time; the previous owner stays on as an admin.
            if (!caller.IsService && actor!.Role != Roles.Owner)
            {
                return ApiError.Forbidden("Only the owner may transfer ownership.");
            }

            List<MembershipChange> changes = [new MembershipChange.SetRole(userId, Roles.Owner)];
            if (owner is not null)
            {
                changes.Add(new MembershipChange.SetRole(owner.UserId, Roles.Admin));
            }

            return changes;
        }

        // A group keeps its owner, whoever asks (the service role too): the owner's role changes only by a transfer.
        if (target.Role == Roles.Owner)
        {
            return ApiError.Forbidden(
                caller.IsService || actor!.Role == Roles.Owner ? "Transfer ownership to another member first." : "Admins cannot change the owner's role.");
        }

        if (!caller.IsService)
        {
            // Admins may promote members and step down themselves; demoting another admin is the owner's call.
            if (actor!.Role == Roles.Admin && target.Role == Roles.Admin && target.UserId != actor.UserId)
            {
                return ApiError.Forbidden("Only the owner may change another admin's role.");
            }
        }

        return new MembershipChange[] { new MembershipChange.SetRole(userId, role) };
    }

    public static StoreResult<IReadOnlyList<MembershipChange>, ApiError> DecideRemoval(Caller caller, ConversationSnapshot snapshot, string userId)
    {
        var actor = snapshot.Find(caller.UserId);
        if (actor is null && !caller.IsService)
        {
            return ApiError.NotFound("Conversation");
        }

        if (snapshot.Conversation.Type == ConversationTypes.Direct)
        {
            return ApiError.Conflict(ErrorCodes.DirectConversation, "A direct conversation's members cannot change.");
        }

        var target = snapshot.Find(userId);
        if (target is null)
        {
            return ApiError.NotFound("Participant");
        }

        var leaving = actor is not null && actor.UserId == userId;
        if (!leaving && !caller.IsService)
        {
            if (!Roles.CanManage(actor!.Role))
            {
                return ApiError.Forbidden("Only the group's owner and admins may remove members.");
            }

            if (actor.Role == Roles.Admin && target.Role != Roles.Member)
            {
                return ApiError.Forbidden("Admins may remove members only; the owner removes admins.");
            }
        }

        List<MembershipChange> changes = [new MembershipChange.Remove(userId)];
        if (target.Role == Roles.Owner)
        {
            // A group keeps an owner: the longest-standing admin, else the longest-standing member.
            var successor = snapshot.Members.Where(m => m.UserId != userId)
                .OrderBy(m => m.Role == Roles.Admin ? 0 : 1).ThenBy(m => m.JoinedSeq).ThenBy(m => m.JoinedAt)
                .FirstOrDefault();
            if (successor is not null)
            {
                changes.Add(new MembershipChange.SetRole(successor.UserId, Roles.Owner));
            }
        }

        return changes;
    }
}

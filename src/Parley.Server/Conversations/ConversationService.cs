using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Conversations;

/// <summary>Creating conversations and managing members. Membership changes are decided inside the store transaction.</summary>
internal sealed class ConversationService(
    IChatStore store,
    ConversationAccess access,
    ConversationLocks locks,
    ConversationBroadcaster broadcaster,
    TimeProvider time,
    IOptions<LimitsOptions> limits)
{
    public const int DefaultPageSize = 20;
    public const int MaxPageSize = 100;

    public async Task<Result<(Conversation Conversation, bool Created)>> CreateAsync(
        Caller caller, CreateConversationRequest? request, CancellationToken cancellationToken)
    {
        if (request is null)
        {
            return ApiError.BadRequest(ErrorCodes.InvalidRequest, "A JSON body is required.");
        }

        var errors = new FieldErrors();
        var type = request.Type;
        if (type is not (ConversationTypes.Direct or ConversationTypes.Group))
        {
            errors.Add("type", "must be 'direct' or 'group'");
        }

        var members = ValidateUserIds(errors, "participant_ids", request.ParticipantIds, allowEmpty: true);
        if (!caller.IsService && !members.Contains(caller.UserId))
        {
            members.Insert(0, caller.UserId);
        }

        var name = string.IsNullOrWhiteSpace(request.Name) ? null : request.Name.Trim();
        if (name is not null && type == ConversationTypes.Direct)
        {
            errors.Add("name", "is only for groups");
        }
        else if (name is not null && name.Length > limits.Value.MaxConversationNameLength)
        {
            errors.Add("name", $"must be at most {limits.Value.MaxConversationNameLength} characters");
        }
        else
        {
            errors.CheckText("name", name);
        }

        string? ownerId = null;
        if (request.OwnerId is not null)
        {
            if (!caller.IsService)
            {
                errors.Add("owner_id", "is accepted from the service role only (the creator owns a group)");
            }
            else if (type != ConversationTypes.Group || !members.Contains(request.OwnerId))
            {
                errors.Add("owner_id", "must be one of participant_ids of a group");
            }
            else
            {
                ownerId = request.OwnerId;
            }
        }
        else if (!caller.IsService)
        {
            ownerId = caller.UserId;
        }

        if (type == ConversationTypes.Direct && members.Count != 2)
        {
            errors.Add("participant_ids", "a direct conversation has exactly two distinct users (the caller counts)");
        }
        else if (type == ConversationTypes.Group && members.Count == 0)
        {
            errors.Add("participant_ids", "a group needs at least one participant");
        }
        else if (members.Count > limits.Value.MaxGroupParticipants)
        {
            errors.Add("participant_ids", $"a group has at most {limits.Value.MaxGroupParticipants} participants");
        }

        if (errors.Any)
        {
            return errors.ToError();
        }

        var now = time.GetUtcNow();
        var roles = members.Select(u => (u, type == ConversationTypes.Group && u == ownerId ? Roles.Owner : Roles.Member)).ToList();
        var directKey = type == ConversationTypes.Direct ? string.Join('\n', members.Order(StringComparer.Ordinal)) : null;
        // Locked from before the commit until conversation_created is out: nothing sent into the new conversation
        // (by a member who found it as an existing direct conversation) can overtake its seq 1, and a request
        // cancelled after the commit still announces it.
        var id = Guid.CreateVersion7(now);
        CreateConversationResult created;
        using (await locks.AcquireAsync(id, cancellationToken))
        {
            created = await store.CreateConversationAsync(new NewConversation(id, type!, name, caller.UserId, roles, directKey, now), CancellationToken.None);
            if (created.Created)
            {
                await broadcaster.ConversationCreatedAsync(created.Snapshot);
            }
        }

        var snapshot = created.Snapshot;

        var lastMessage = await LastMessageAsync(snapshot, cancellationToken);
        return (ConversationViews.ToView(snapshot, snapshot.Find(caller.UserId), lastMessage), created.Created);
    }

    public async Task<Result<Conversation>> GetAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiError.InvalidId("id");
        }

        var membership = await access.RequireMemberAsync(caller, conversationId, cancellationToken);
        if (!membership.IsSuccess)
        {
            return membership.Error!;
        }

        var snapshot = await store.GetConversationAsync(conversationId, cancellationToken);
        if (snapshot is null)
        {
            return ApiError.NotFound("Conversation");
        }

        return ConversationViews.ToView(snapshot, snapshot.Find(caller.UserId), await LastMessageAsync(snapshot, cancellationToken));
    }

    public async Task<Result<ConversationList>> ListAsync(Caller caller, string? limit, string? cursor, CancellationToken cancellationToken)
    {
        var pageSize = DefaultPageSize;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > MaxPageSize))
        {
            return ApiError.Invalid("limit", $"'limit' must be an integer from 1 to {MaxPageSize}.");
        }

        ConversationPosition? after = null;
        if (cursor is not null && !TryDecodeCursor(cursor, out after))
        {
            return ApiError.Invalid("cursor", "'cursor' is not a cursor returned by this endpoint.");
        }

        var items = await store.ListConversationsAsync(caller.UserId, after, pageSize + 1, cancellationToken);
        var page = items.Take(pageSize).ToList();
        var next = items.Count > pageSize ? EncodeCursor(page[^1].Caller.LastActivityAt, page[^1].Snapshot.Conversation.Id) : null;
        return new ConversationList(page.Select(i => ConversationViews.ToView(i.Snapshot, i.Caller, i.LastMessage)).ToList(), next);
    }

    public async Task<Result<Conversation>> AddParticipantsAsync(
        Caller caller, string id, AddParticipantsRequest? request, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiError.InvalidId("id");
        }

        var errors = new FieldErrors();
        var userIds = ValidateUserIds(errors, "user_ids", request?.UserIds, allowEmpty: false);
        if (errors.Any)
        {
            return errors.ToError();
        }

        var max = limits.Value.MaxGroupParticipants;
        var result = await ChangeAsync(caller, conversationId, snapshot =>
        {
            if (RequireManager(caller, snapshot) is { } denied)
            {
                return denied;
            }

            var added = userIds.Where(u => snapshot.Find(u) is null).ToList();
            if (snapshot.Members.Count + added.Count > max)
            {
                return ApiError.Conflict(ErrorCodes.ParticipantLimit, $"A group has at most {max} participants.");
            }

            return added.Select(u => (MembershipChange)new MembershipChange.Add(u, Roles.Member)).ToList();
        }, cancellationToken);
        if (!result.IsSuccess)
        {
            return result.Error!;
        }

        var after = result.Value!.After;
        return ConversationViews.ToView(after, after.Find(caller.UserId), await LastMessageAsync(after, cancellationToken));
    }

    public async Task<Result<Participant>> UpdateParticipantAsync(
        Caller caller, string id, string userId, UpdateParticipantRequest? request, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiError.InvalidId("id");
        }

        var role = request?.Role;
        if (!Roles.IsValid(role))
        {
            return ApiError.Invalid("role", "'role' must be 'owner', 'admin' or 'member'.");
        }

        var result = await ChangeAsync(caller, conversationId, snapshot => DecideRoleChange(caller, snapshot, userId, role!), cancellationToken);
        if (!result.IsSuccess)
        {
            return result.Error!;
        }

        var target = result.Value!.After.Find(userId)!;
        return new Participant(target.UserId, target.Role, target.JoinedAt);
    }

    public async Task<ApiError?> RemoveParticipantAsync(Caller caller, string id, string userId, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiError.InvalidId("id");
        }

        var result = await ChangeAsync(caller, conversationId, snapshot => DecideRemoval(caller, snapshot, userId), cancellationToken);
        return result.Error;
    }

    private async Task<Result<MembershipResult>> ChangeAsync(
        Caller caller, Guid conversationId, Func<ConversationSnapshot, StoreResult<IReadOnlyList<MembershipChange>, ApiError>> decide,
        CancellationToken cancellationToken)
    {
        using (await locks.AcquireAsync(conversationId, cancellationToken))
        {
            var result = await store.ChangeMembershipAsync(conversationId, caller.UserId, decide, time.GetUtcNow(), cancellationToken);
            if (!result.IsApplied)
            {
                return result.Failure(ConversationAccess.Refused);
            }

            await broadcaster.MembershipChangedAsync(result.Value!);
            return result.Value!;
        }
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

    private static StoreResult<IReadOnlyList<MembershipChange>, ApiError> DecideRoleChange(Caller caller, ConversationSnapshot snapshot, string userId, string role)
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

        if (!caller.IsService)
        {
            if (target.Role == Roles.Owner)
            {
                return ApiError.Forbidden(
                    actor!.Role == Roles.Owner ? "Transfer ownership to another member first." : "Admins cannot change the owner's role.");
            }

            // Admins may promote members and step down themselves; demoting another admin is the owner's call.
            if (actor!.Role == Roles.Admin && target.Role == Roles.Admin && target.UserId != actor.UserId)
            {
                return ApiError.Forbidden("Only the owner may change another admin's role.");
            }
        }

        return new MembershipChange[] { new MembershipChange.SetRole(userId, role) };
    }

    private static StoreResult<IReadOnlyList<MembershipChange>, ApiError> DecideRemoval(Caller caller, ConversationSnapshot snapshot, string userId)
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

    private static List<string> ValidateUserIds(FieldErrors errors, string field, List<string?>? input, bool allowEmpty)
    {
        var result = new List<string>();
        if (input is null || (input.Count == 0 && !allowEmpty))
        {
            errors.Add(field, "is required (a list of user ids)");
            return result;
        }

        for (var i = 0; i < input.Count; i++)
        {
            var userId = input[i];
            if (!Identifiers.IsValidUserId(userId))
            {
                errors.Add($"{field}[{i}]", "must be a well-formed user id (1-128 characters, no whitespace or control characters)");
            }
            else if (!result.Contains(userId!))
            {
                result.Add(userId!);
            }
        }

        return result;
    }

    private async Task<Message?> LastMessageAsync(ConversationSnapshot snapshot, CancellationToken cancellationToken) =>
        snapshot.Conversation.LastMessageId is { } id ? await store.GetMessageAsync(id, cancellationToken) : null;

    private static string EncodeCursor(DateTimeOffset lastActivityAt, Guid conversationId) =>
        System.Buffers.Text.Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{lastActivityAt.ToUnixTimeMilliseconds()}:{conversationId:D}"));

    private static bool TryDecodeCursor(string cursor, out ConversationPosition? position)
    {
        position = null;
        try
        {
            var parts = Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(cursor)).Split(':');
            if (parts.Length == 2
                && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
                && Guid.TryParseExact(parts[1], "D", out var id))
            {
                position = new ConversationPosition(DateTimeOffset.FromUnixTimeMilliseconds(ms), id);
                return true;
            }
        }
        catch (Exception ex) when (ex is FormatException or ArgumentOutOfRangeException)
        {
            // Falls through: not a cursor of ours.
        }

        return false;
    }
}

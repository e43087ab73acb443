using System.Globalization;
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
    MembershipRemovals removals,
    TimeProvider time,
    IOptions<LimitsOptions> limits,
    IOptions<AuthOptions> auth)
{
    public const int DefaultPageSize = 20;
    public const int MaxPageSize = 100;

    public async Task<Result<(Conversation Conversation, bool Created)>> CreateAsync(
        Caller caller, CreateConversationRequest? request, CancellationToken cancellationToken)
    {
        if (request is null)
        {
            return ApiError.BodyRequired();
        }

        var input = ConversationInput.ValidateCreate(caller, request, limits.Value, auth.Value.ServiceUserId);
        if (!input.IsSuccess)
        {
            return input.Error!;
        }

        var (type, members, name, ownerId) = input.Value!;
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
            created = await store.CreateConversationAsync(new NewConversation(id, type, name, caller.UserId, roles, directKey, now), CancellationToken.None);
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

        // Removed between the check above and this read: not a member of what this read shows (and a view without a
        // member is the service role's, which would show what was sent after the removal).
        var snapshot = await store.GetConversationAsync(conversationId, cancellationToken);
        var member = snapshot?.Find(caller.UserId);
        if (snapshot is null || (member is null && !caller.IsService))
        {
            return ApiError.NotFound("Conversation");
        }

        return ConversationViews.ToView(snapshot, member, await LastMessageAsync(snapshot, cancellationToken));
    }

    public async Task<Result<ConversationList>> ListAsync(Caller caller, string? limit, string? cursor, CancellationToken cancellationToken)
    {
        var pageSize = DefaultPageSize;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > MaxPageSize))
        {
            return ApiError.Invalid("limit", $"'limit' must be an integer from 1 to {MaxPageSize}.");
        }

        ConversationPosition? after = null;
        if (cursor is not null && !ConversationListCursor.TryDecode(cursor, out after))
        {
            return ApiError.Invalid("cursor", "'cursor' is not a cursor returned by this endpoint.");
        }

        var items = await store.ListConversationsAsync(caller.UserId, after, pageSize + 1, cancellationToken);
        var page = items.Take(pageSize).ToList();
        var next = items.Count > pageSize ? ConversationListCursor.Encode(page[^1].Caller.LastActivityAt, page[^1].Snapshot.Conversation.Id) : null;
        return new ConversationList(page.Select(i => ConversationViews.ToView(i.Snapshot, i.Caller, i.LastMessage)).ToList(), next);
    }

    public async Task<Result<Conversation>> AddParticipantsAsync(
        Caller caller, string id, AddParticipantsRequest? request, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiError.InvalidId("id");
        }

        if (request is null)
        {
            return ApiError.BodyRequired();
        }

        var errors = new FieldErrors();
        var userIds = ConversationInput.ValidateUserIds(
            errors, "user_ids", request.UserIds, allowEmpty: false, limits.Value.MaxGroupParticipants, auth.Value.ServiceUserId);
        if (errors.Any)
        {
            return errors.ToError();
        }

        var max = limits.Value.MaxGroupParticipants;
        var result = await ChangeAsync(caller, conversationId, snapshot => MembershipRules.DecideAdditions(caller, snapshot, userIds, max), cancellationToken);
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

        if (!Identifiers.IsValidUserId(userId))
        {
            return ApiError.Invalid("user_id", Identifiers.UserIdRule);
        }

        if (request is null)
        {
            return ApiError.BodyRequired();
        }

        var role = request.Role;
        if (!Roles.IsValid(role))
        {
            return ApiError.Invalid("role", "'role' must be 'owner', 'admin' or 'member'.");
        }

        var result = await ChangeAsync(caller, conversationId, snapshot => MembershipRules.DecideRoleChange(caller, snapshot, userId, role!), cancellationToken);
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

        if (!Identifiers.IsValidUserId(userId))
        {
            return ApiError.Invalid("user_id", Identifiers.UserIdRule);
        }

        var result = await ChangeAsync(caller, conversationId, snapshot => MembershipRules.DecideRemoval(caller, snapshot, userId), cancellationToken);
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
            foreach (var applied in result.Value!.Applied)
            {
                if (applied.Change is MembershipChange.Remove removed)
                {
                    removals.Removed(conversationId, removed.UserId, result.Value.After.Members);
                }
            }

            return result.Value!;
        }
    }

    private Task<Message?> LastMessageAsync(ConversationSnapshot snapshot, CancellationToken cancellationToken) =>
        store.GetLastMessageAsync(snapshot, cancellationToken);


}

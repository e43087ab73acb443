using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Conversations;

/// <summary>A valid request to create a conversation: its type, members (the caller included), name and owner.</summary>
internal sealed record NewConversationInput(string Type, List<string> Members, string? Name, string? OwnerId);

/// <summary>Input rules for conversation requests: field errors collected, all reported at once.</summary>
internal static class ConversationInput
{
    public static Result<NewConversationInput> ValidateCreate(Caller caller, CreateConversationRequest request, LimitsOptions limits, string reservedUserId)
    {
        var errors = new FieldErrors();
        var type = request.Type;
        if (type is not (ConversationTypes.Direct or ConversationTypes.Group))
        {
            errors.Add("type", "must be 'direct' or 'group'");
        }

        var members = ValidateUserIds(errors, "participant_ids", request.ParticipantIds, allowEmpty: true, limits.MaxGroupParticipants, reservedUserId);
        if (!caller.IsService && !members.Contains(caller.UserId))
        {
            members.Insert(0, caller.UserId);
        }

        var name = string.IsNullOrWhiteSpace(request.Name) ? null : request.Name.Trim();
        if (name is not null && type == ConversationTypes.Direct)
        {
            errors.Add("name", "is only for groups");
        }
        else if (name is not null && name.Length > limits.MaxConversationNameLength)
        {
            errors.Add("name", $"must be at most {limits.MaxConversationNameLength} characters");
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
        else if (members.Count > limits.MaxGroupParticipants)
        {
            errors.Add("participant_ids", $"a group has at most {limits.MaxGroupParticipants} participants");
        }

        if (errors.Any)
        {
            return errors.ToError();
        }

        return new NewConversationInput(type!, members, name, ownerId);
    }

    /// <summary>
    /// The distinct, well-formed user ids of <paramref name="input"/>, in order. A list longer than a group may be is
    /// refused before any other work (each id is later compared with the members); the service role's id
    /// (<paramref name="reservedUserId"/>) is no member anyone can add.
    /// </summary>
    public static List<string> ValidateUserIds(
        FieldErrors errors, string field, List<string?>? input, bool allowEmpty, int maxCount, string reservedUserId)
    {
        var result = new List<string>();
        if (input is null || (input.Count == 0 && !allowEmpty))
        {
            errors.Add(field, "is required (a list of user ids)");
            return result;
        }

        if (input.Count > maxCount)
        {
            errors.Add(field, $"has {input.Count} user ids; a group has at most {maxCount} participants");
            return result;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < input.Count; i++)
        {
            var userId = input[i];
            if (!Identifiers.IsValidUserId(userId))
            {
                errors.Add($"{field}[{i}]", $"must be a well-formed user id ({Identifiers.Shape})");
            }
            else if (userId == reservedUserId)
            {
                errors.Add($"{field}[{i}]", $"'{userId}' is reserved for the service role (Auth:ServiceUserId)");
            }
            else if (seen.Add(userId!))
            {
                result.Add(userId!);
            }
        }

        return result;
    }
}

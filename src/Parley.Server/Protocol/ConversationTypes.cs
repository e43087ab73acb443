namespace Parley.Server.Protocol;

internal static class ConversationTypes
{
    public const string Direct = "direct";
    public const string Group = "group";
}

internal static class Roles
{
    public const string Owner = "owner";
    public const string Admin = "admin";
    public const string Member = "member";

    public static bool IsValid(string? role) => role is Owner or Admin or Member;

    public static bool CanManage(string role) => role is Owner or Admin;
}

internal sealed record Participant(string UserId, string Role, DateTimeOffset JoinedAt);

/// <summary>
/// A conversation as one caller sees it: <see cref="UnreadCount"/>, <see cref="ReadUpToSeq"/> and
/// <see cref="LastReadMessageId"/> are the caller's own; <see cref="LastMessage"/> is null when the caller joined after it.
/// </summary>
internal sealed record Conversation(
    Guid Id,
    string Type,
    string? Name,
    string CreatedBy,
    DateTimeOffset CreatedAt,
    DateTimeOffset LastActivityAt,
    long LastSeq,
    IReadOnlyList<Participant> Participants,
    Storage.Message? LastMessage,
    int UnreadCount,
    long ReadUpToSeq,
    Guid? LastReadMessageId);

internal sealed record ConversationList(IReadOnlyList<Conversation> Conversations, string? NextCursor);

internal sealed class CreateConversationRequest
{
    public string? Type { get; set; }

    public List<string?>? ParticipantIds { get; set; }

    public string? Name { get; set; }

    /// <summary>Service role only: the member who owns a group created on a user's behalf.</summary>
    public string? OwnerId { get; set; }
}

internal sealed class AddParticipantsRequest
{
    public List<string?>? UserIds { get; set; }
}

internal sealed class UpdateParticipantRequest
{
    public string? Role { get; set; }
}

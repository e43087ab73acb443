using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Storage;

namespace Parley.Server.Conversations;

/// <summary>
/// Who may see what. Non-members get 404 for a conversation and everything in it (existence is not revealed);
/// members see messages sent after they joined. The service role sees every conversation.
/// </summary>
internal sealed class ConversationAccess(IChatStore store)
{
    /// <summary>The caller's membership (null for the service role), or a 404 when the caller may not see the conversation.</summary>
    public async Task<Result<MemberRecord?>> RequireMemberAsync(Caller caller, Guid conversationId, CancellationToken cancellationToken)
    {
        var member = await store.GetMemberAsync(conversationId, caller.UserId, cancellationToken);
        if (member is not null)
        {
            return member;
        }

        if (caller.IsService && await store.GetConversationAsync(conversationId, cancellationToken) is not null)
        {
            return (MemberRecord?)null;
        }

        return ApiError.NotFound("Conversation");
    }

    /// <summary>The message if the caller may see it, else 404.</summary>
    public async Task<Result<Message>> RequireVisibleMessageAsync(Caller caller, Guid messageId, CancellationToken cancellationToken)
    {
        var message = await store.GetMessageAsync(messageId, cancellationToken);
        if (message is null)
        {
            return ApiError.NotFound("Message");
        }

        if (caller.IsService)
        {
            return message;
        }

        var member = await store.GetMemberAsync(message.ConversationId, caller.UserId, cancellationToken);
        return CanSee(member, message) ? message : ApiError.NotFound("Message");
    }

    /// <summary>
    /// What the store's own refusals mean for the caller: what the write was about is not there, or not there for the
    /// caller, so a 404 naming the conversation or the message, as for a non-member.
    /// </summary>
    public static ApiError Refused(StoreRefusal refusal) => refusal switch
    {
        StoreRefusal.MessageNotFound => ApiError.NotFound("Message"),
        StoreRefusal.ConversationNotFound or StoreRefusal.NotAMember => ApiError.NotFound("Conversation"),
        _ => throw new ArgumentOutOfRangeException(nameof(refusal), refusal, "Unknown store refusal."),
    };

    public static bool CanSee(MemberRecord? member, Message message) => member is not null && message.Seq > member.JoinedSeq;

    /// <summary>The same decision on facts read inside a transaction.</summary>
    public static bool CanSee(Caller caller, ConversationSnapshot conversation, Message message) =>
        caller.IsService || CanSee(conversation.Find(caller.UserId), message);
}

using System.Globalization;
using Microsoft.Extensions.Options;
using Parley.Server.Broadcasting;
using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Observability;
using Parley.Server.Presence;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Messages;

/// <summary>Sending, reading, editing and deleting messages: the rules, then one store transaction, then the live events.</summary>
internal sealed class MessageService(
    IChatStore store,
    ConversationAccess access,
    ConversationLocks locks,
    ConversationBroadcaster broadcaster,
    TypingTracker typing,
    TimeProvider time,
    IOptions<LimitsOptions> limits)
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 100;

    private readonly MessageValidation _validation = new(limits.Value);

    public async Task<Result<SendResult>> SendAsync(Caller caller, SendMessageRequest? request, CancellationToken cancellationToken)
    {
        // Ids and the type only: a span never carries content.
        using var activity = ParleyActivitySource.Source.StartActivity(ParleyActivitySource.Spans.MessageSend);
        var validated = _validation.ValidateSend(request, caller.IsService);
        if (!validated.IsSuccess)
        {
            activity?.SetTag(ParleyActivitySource.Tags.ErrorCode, validated.Error!.Code);
            return validated.Error!;
        }

        var v = validated.Value!;
        activity?.SetTag(ParleyActivitySource.Tags.ConversationId, v.ConversationId);
        activity?.SetTag(ParleyActivitySource.Tags.MessageType, v.MessageType);
        var now = time.GetUtcNow();
        var draft = new NewMessage(
            Guid.CreateVersion7(now), v.ConversationId, caller.UserId, caller.IsService, v.MessageType, v.Content, v.ReplyToId, v.Mentions,
            v.Media, v.Location, v.ClientMessageId, now);

        StoreResult<SendResult, ApiError> result;
        using (await locks.AcquireAsync(draft.ConversationId, cancellationToken))
        {
            using (ParleyActivitySource.Source.StartActivity(ParleyActivitySource.Spans.Commit))
            {
                result = await store.AppendMessageAsync(draft, facts => CheckSend(caller, draft, facts), cancellationToken);
            }

            if (result.Value is { Created: true } sent)
            {
                using var fanout = ParleyActivitySource.Source.StartActivity(ParleyActivitySource.Spans.Fanout);
                fanout?.SetTag(ParleyActivitySource.Tags.Recipients, sent.Members.Count);
                await broadcaster.MessageCreatedAsync(sent.Message, sent.Members);
            }
        }

        if (!result.IsApplied)
        {
            var failure = result.Failure(ConversationAccess.Refused);
            activity?.SetTag(ParleyActivitySource.Tags.ErrorCode, failure.Code);
            return failure;
        }

        if (result.Value is { Created: true } done)
        {
            // A message ends its sender's typing indicator (after the message, not waited for).
            typing.End(done.Message.ConversationId, caller.UserId, done.Members);
        }

        activity?.SetTag(ParleyActivitySource.Tags.MessageId, result.Value!.Message.Id);
        return result.Value!;
    }

    public Task<Result<Message>> GetAsync(Caller caller, string id, CancellationToken cancellationToken) =>
        Identifiers.TryParseUuid(id, out var messageId)
            ? access.RequireVisibleMessageAsync(caller, messageId, cancellationToken)
            : Task.FromResult<Result<Message>>(ApiError.InvalidId("id"));

    public async Task<Result<MessagePage>> ListAsync(
        Caller caller, string conversationId, string? limit, string? before, string? after, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(conversationId, out var id))
        {
            return ApiError.InvalidId("id");
        }

        var errors = new FieldErrors();
        var pageSize = ParseLong(errors, "limit", limit, 1, MaxPageSize) ?? DefaultPageSize;
        var beforeSeq = ParseLong(errors, "before", before, 1, long.MaxValue);
        var afterSeq = ParseLong(errors, "after", after, 0, long.MaxValue);
        if (beforeSeq is not null && afterSeq is not null)
        {
            errors.Add("before", "cannot be combined with 'after'");
        }

        if (errors.Any)
        {
            return errors.ToError();
        }

        var membership = await access.RequireMemberAsync(caller, id, cancellationToken);
        if (!membership.IsSuccess)
        {
            return membership.Error!;
        }

        var visibleAfter = membership.Value?.JoinedSeq ?? 0;
        var rows = await store.ListMessagesAsync(new MessageQuery(id, visibleAfter, beforeSeq, afterSeq, (int)pageSize + 1), cancellationToken);
        var hasMore = rows.Count > pageSize;
        var page = hasMore ? rows.Take((int)pageSize).ToList() : rows;
        long? next = hasMore ? page[^1].Seq : null;
        return new MessagePage(page, hasMore, next);
    }

    public async Task<Result<Message>> EditAsync(Caller caller, string id, EditMessageRequest? request, CancellationToken cancellationToken)
    {
        var current = await GetAsync(caller, id, cancellationToken);
        if (!current.IsSuccess)
        {
            return current.Error!;
        }

        var message = current.Value!;
        var validated = _validation.ValidateEdit(request, message.MessageType);
        if (!validated.IsSuccess)
        {
            return validated.Error!;
        }

        var (content, mentions) = validated.Value;
        var now = time.GetUtcNow();
        var window = limits.Value.EditWindow;
        using (await locks.AcquireAsync(message.ConversationId, cancellationToken))
        {
            var result = await store.EditMessageAsync(
                message.Id, caller.UserId, content, mentions, facts => CheckEdit(caller, facts, mentions, now, window), now, cancellationToken);
            if (result.Value is { Seq: > 0 } edited)
            {
                await broadcaster.MessageEditedAsync(edited.Message, edited.Seq, edited.Members);
            }

            return result.IsApplied ? result.Value!.Message : result.Failure(ConversationAccess.Refused);
        }
    }

    public async Task<Result<Message>> DeleteAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        var current = await GetAsync(caller, id, cancellationToken);
        if (!current.IsSuccess)
        {
            return current.Error!;
        }

        var message = current.Value!;
        var now = time.GetUtcNow();
        using (await locks.AcquireAsync(message.ConversationId, cancellationToken))
        {
            var result = await store.DeleteMessageAsync(message.Id, caller.UserId, facts => CheckDelete(caller, facts), now, cancellationToken);
            if (result.Value is { Seq: > 0 } deleted)
            {
                await broadcaster.MessageDeletedAsync(deleted.Message, deleted.Seq, caller.UserId, deleted.Members);
            }

            return result.IsApplied ? result.Value!.Message : result.Failure(ConversationAccess.Refused);
        }
    }

    public async Task<Result<MessageEdits>> GetEditsAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        var message = await GetAsync(caller, id, cancellationToken);
        if (!message.IsSuccess)
        {
            return message.Error!;
        }

        return new MessageEdits(message.Value!.Id, await store.GetEditsAsync(message.Value.Id, cancellationToken));
    }

    private static ApiError? CheckSend(Caller caller, NewMessage draft, SendFacts facts)
    {
        var conversation = facts.Conversation;
        var sender = conversation?.Find(caller.UserId);
        if (conversation is null || sender is null && !caller.IsService)
        {
            return ApiError.NotFound("Conversation");
        }

        if (facts.Existing is { } existing)
        {
            // A retry. A deleted original answers with its tombstone: its content is gone, so there is nothing to compare.
            // An edited original is compared with its first version: what the retried send carried.
            var sent = facts.ExistingOriginal is { } first ? (first.Content, first.Mentions) : (existing.Content, existing.Mentions);
            return existing.DeletedAt is not null || SameBody(existing, sent.Content, sent.Mentions, draft)
                ? null
                : ApiError.Conflict(
                    ErrorCodes.IdempotencyConflict,
                    $"client_message_id '{draft.ClientMessageId}' was already used for a different message in this conversation.");
        }

        if (draft.ReplyToId is not null)
        {
            var target = facts.ReplyTarget;
            if (target is null || target.ConversationId != draft.ConversationId || sender is not null && target.Seq <= sender.JoinedSeq)
            {
                return ApiError.Invalid("reply_to_id", "'reply_to_id' must be a message of this conversation.");
            }
        }

        return CheckMentions(conversation, draft.Mentions);
    }

    private static ApiError? CheckEdit(Caller caller, MessageFacts facts, IReadOnlyList<Mention>? mentions, DateTimeOffset now, TimeSpan window)
    {
        var message = facts.Message;
        if (!ConversationAccess.CanSee(caller, facts.Conversation, message))
        {
            return ApiError.NotFound("Message");
        }

        if (!IsSender(caller, message))
        {
            return new ApiError(403, ErrorCodes.NotSender, "Only the sender may edit a message.");
        }

        if (message.DeletedAt is not null)
        {
            return ApiError.Conflict(ErrorCodes.MessageDeleted, "The message was deleted.");
        }

        if (now - message.CreatedAt > window)
        {
            return new ApiError(
                403, ErrorCodes.EditWindowExpired,
                $"Messages can be edited for {window.TotalHours.ToString(CultureInfo.InvariantCulture)} hours after sending.");
        }

        // A mention the message already had may stay after its user left: fixing a typo must not mean dropping it.
        return CheckMentions(facts.Conversation, mentions, kept: message.Mentions);
    }

    private static ApiError? CheckDelete(Caller caller, MessageFacts facts)
    {
        var message = facts.Message;
        if (!ConversationAccess.CanSee(caller, facts.Conversation, message))
        {
            return ApiError.NotFound("Message");
        }

        var member = facts.Conversation.Find(caller.UserId);
        var isGroupAdmin = facts.Conversation.Conversation.Type == ConversationTypes.Group && member is not null && Roles.CanManage(member.Role);
        return caller.IsService || IsSender(caller, message) || isGroupAdmin
            ? null
            : ApiError.Forbidden("Only the sender or a group admin may delete a message.");
    }

    /// <summary>
    /// A system message belongs to the service role: a user whose id happens to equal the service's sender id
    /// (any well-formed id is a user) is not its sender, or that user could rewrite the service's messages.
    /// </summary>
    private static bool IsSender(Caller caller, Message message) =>
        message.SenderId == caller.UserId && (caller.IsService || message.MessageType != MessageTypes.System);

    /// <summary>Each mention names a current member, or (in an edit) a user the message mentioned before (<paramref name="kept"/>).</summary>
    private static ApiError? CheckMentions(ConversationSnapshot conversation, IReadOnlyList<Mention>? mentions, IReadOnlyList<Mention>? kept = null)
    {
        foreach (var mention in mentions ?? [])
        {
            if (conversation.Find(mention.UserId) is null && kept?.Any(k => k.UserId == mention.UserId) != true)
            {
                return ApiError.Invalid("mentions", $"'{mention.UserId}' is not a member of this conversation.");
            }
        }

        return null;
    }

    private static bool SameBody(Message existing, string? content, IReadOnlyList<Mention>? mentions, NewMessage draft) =>
        existing.MessageType == draft.MessageType
        && content == draft.Content
        && existing.ReplyToId == draft.ReplyToId
        && (mentions ?? []).SequenceEqual(draft.Mentions ?? [])
        && existing.Media == draft.Media
        && existing.Location == draft.Location;

    private static long? ParseLong(FieldErrors errors, string name, string? value, long min, long max)
    {
        if (value is null)
        {
            return null;
        }

        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) || parsed < min || parsed > max)
        {
            errors.Add(name, max == long.MaxValue ? $"must be an integer of at least {min}" : $"must be an integer from {min} to {max}");
            return null;
        }

        return parsed;
    }
}

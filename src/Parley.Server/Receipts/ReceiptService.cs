using Parley.Server.Broadcasting;
using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Receipts;

internal sealed class ReceiptService(
    IChatStore store,
    ConversationAccess access,
    ConversationLocks locks,
    ConversationBroadcaster broadcaster,
    DeliveryTracker deliveries,
    TimeProvider time)
{
    /// <summary>
    /// The caller has read everything up to and including the message. An older message is a no-op.
    /// <paramref name="idName"/> names the id in errors: the path's <c>id</c>, or the frame's <c>message_id</c>.
    /// </summary>
    public async Task<Result<ReadState>> MarkReadAsync(Caller caller, string id, string idName, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var messageId))
        {
            return ApiError.InvalidId(idName);
        }

        var message = await access.RequireVisibleMessageAsync(caller, messageId, cancellationToken);
        if (!message.IsSuccess)
        {
            return message.Error!;
        }

        var conversationId = message.Value!.ConversationId;
        using (await locks.AcquireAsync(conversationId, cancellationToken))
        {
            // The service role has no read position: for it the store refuses, and the answer is 404 as for any non-member.
            var result = await store.AdvanceReadAsync(conversationId, caller.UserId, messageId, time.GetUtcNow(), cancellationToken);
            if (result.Refusal is { } refusal)
            {
                return ConversationAccess.Refused(refusal);
            }

            await broadcaster.WatermarkMovedAsync(result.Value!);
            var after = result.Value!.After;
            return new ReadState(conversationId, caller.UserId, after.ReadMessageId, after.ReadSeq, after.DeliveredSeq, after.UnreadCount);
        }
    }

    /// <summary>
    /// A device acknowledged everything up to <paramref name="seq"/> (cumulative): counts as delivered for its user. A seq
    /// past the conversation's last is refused: it names nothing the device holds, and taken as it is it would count a
    /// message sent before the delivered batch is written as delivered to a device that never received it.
    /// </summary>
    public async Task<ApiError?> AcknowledgeAsync(Caller caller, Guid conversationId, long seq, CancellationToken cancellationToken)
    {
        if (await store.GetMemberWithLastSeqAsync(conversationId, caller.UserId, cancellationToken) is not var (member, lastSeq))
        {
            return ApiError.NotFound("Conversation");
        }

        if (seq > lastSeq)
        {
            return ApiError.Invalid("seq", $"'seq' is past the conversation's last seq ({lastSeq}): acknowledge only what this device received.");
        }

        if (seq > member.DeliveredSeq)
        {
            deliveries.Report(conversationId, caller.UserId, seq);
        }

        return null;
    }
}

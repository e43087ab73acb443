namespace Parley.Server.Storage.Sql;

/// <summary>Creating conversations and reading them: one, a member, and a user's list.</summary>
internal abstract partial class SqlChatStore
{
    public async Task<CreateConversationResult> CreateConversationAsync(NewConversation conversation, CancellationToken cancellationToken) =>
        await WriteAsync(null, async s =>
        {
            var now = conversation.Now;
            // A concurrent create of the same direct pair waits on the unique key, then inserts nothing.
            var inserted = await s.Sql(
                """
                INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, direct_key)
                VALUES (@id, @type, @name, @by, @now, @now, 1, @key)
                ON CONFLICT (direct_key) DO NOTHING
                """)
                .With("@id", conversation.Id).With("@type", conversation.Type).With("@name", conversation.Name)
                .With("@by", conversation.CreatedBy).With("@now", now).With("@key", conversation.DirectKey)
                .ExecuteAsync(cancellationToken);
            if (inserted == 0)
            {
                var existingId = await s.Sql("SELECT id FROM conversations WHERE direct_key = @k")
                    .With("@k", conversation.DirectKey).FirstOrDefaultAsync(r => (object)r.Guid(0), cancellationToken);
                var existing = await LoadSnapshotAsync(s, (Guid)existingId!, cancellationToken);
                return new CreateConversationResult(existing!, Created: false);
            }

            foreach (var (userId, role) in conversation.Members)
            {
                await InsertOrRejoinAsync(s, conversation.Id, userId, role, joinedSeq: 0, now, cancellationToken);
            }

            // Creation is the conversation's first event (seq 1), so a replay from the start shows it.
            await InsertEventAsync(
                s, new ConversationEvent(conversation.Id, 1, EventTypes.ConversationCreated, null, conversation.CreatedBy, null, null, now),
                cancellationToken);
            // The roster it was created with: with later participant events, the roster as of any seq (a former
            // member's replay shows the conversation as it was when the membership ended).
            await s.Sql("UPDATE conversation_events SET members = @m WHERE conversation_id = @c AND seq = 1")
                .With("@c", conversation.Id)
                .WithJson("@m", conversation.Members.Select(m => new RosterEntry(m.UserId, m.Role)).ToList(), StorageJsonContext.Default.IReadOnlyListRosterEntry)
                .ExecuteAsync(cancellationToken);

            var snapshot = await LoadSnapshotAsync(s, conversation.Id, cancellationToken);
            return new CreateConversationResult(snapshot!, Created: true);
        }, cancellationToken);

    public Task<ConversationSnapshot?> GetConversationAsync(Guid conversationId, CancellationToken cancellationToken) =>
        ReadAsync(s => LoadSnapshotAsync(s, conversationId, cancellationToken), cancellationToken);

    public Task<MemberRecord?> GetMemberAsync(Guid conversationId, string userId, CancellationToken cancellationToken) =>
        ReadAsync(s => LoadMemberAsync(s, conversationId, userId, cancellationToken), cancellationToken);

    public Task<(MemberRecord Member, long LastSeq)?> GetMemberWithLastSeqAsync(Guid conversationId, string userId, CancellationToken cancellationToken) =>
        ReadAsync(
            async s => (await s.Sql(
                $"""
                SELECT {SqlRow.MemberColumns}, c.last_seq FROM participants p JOIN conversations c ON c.id = p.conversation_id
                WHERE p.conversation_id = @c AND p.user_id = @u AND p.left_at IS NULL
                """)
                .With("@c", conversationId).With("@u", userId)
                .ListAsync(r => (r.Member(), r.Long(SqlRow.MemberColumnCount)), cancellationToken)) is [var row] ? row : ((MemberRecord, long)?)null,
            cancellationToken);

    public Task<bool> SharesConversationAsync(string userId, string otherUserId, CancellationToken cancellationToken) =>
        ReadAsync(
            async s => (await s.Sql(
                """
                SELECT 1 FROM participants a JOIN participants b ON b.conversation_id = a.conversation_id
                WHERE a.user_id = @a AND a.left_at IS NULL AND b.user_id = @b AND b.left_at IS NULL
                LIMIT 1
                """)
                .With("@a", userId).With("@b", otherUserId).ListAsync(r => r.Long(0), cancellationToken)).Count > 0,
            cancellationToken);

    public Task<IReadOnlyList<string>> ListContactsAsync(string userId, int maxMembers, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<string>>(
            async s => await s.Sql(
                // A conversation counts while it has no (maxMembers + 1)-th member: bounded work however large it is.
                """
                SELECT DISTINCT o.user_id
                FROM participants me
                JOIN participants o ON o.conversation_id = me.conversation_id AND o.left_at IS NULL AND o.user_id <> me.user_id
                WHERE me.user_id = @u AND me.left_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM participants m WHERE m.conversation_id = me.conversation_id AND m.left_at IS NULL LIMIT 1 OFFSET @max)
                LIMIT @n
                """)
                .With("@u", userId).With("@max", maxMembers).With("@n", limit).ListAsync(r => r.String(0), cancellationToken),
            cancellationToken);

    public Task<IReadOnlyList<ConversationListItem>> ListConversationsAsync(
        string userId, ConversationPosition? after, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<ConversationListItem>>(async s =>
        {
            var rows = await s.Sql(
                $"""
                SELECT {SqlRow.MemberColumns}, {SqlRow.ConversationColumns}
                FROM participants p JOIN conversations c ON c.id = p.conversation_id
                WHERE p.user_id = @u AND p.left_at IS NULL
                  AND (@t IS NULL OR p.last_activity_at < @t OR (p.last_activity_at = @t AND p.conversation_id < @cid))
                ORDER BY p.last_activity_at DESC, p.conversation_id DESC
                LIMIT @limit
                """)
                .With("@u", userId).With("@t", after?.LastActivityAt).With("@cid", after?.ConversationId).With("@limit", limit)
                .ListAsync(r => (Caller: r.Member(), Conversation: r.Conversation(SqlRow.MemberColumnCount)), cancellationToken);
            if (rows.Count == 0)
            {
                return [];
            }

            var members = await LoadMembersAsync(s, rows.Select(r => r.Conversation.Id).ToList(), cancellationToken);
            var lastMessageIds = rows.Where(r => r.Conversation.LastMessageId is not null).Select(r => r.Conversation.LastMessageId!.Value).ToList();
            var lastMessages = new Dictionary<Guid, Message>();
            if (lastMessageIds.Count > 0)
            {
                var command = s.Sql($"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id IN ({Placeholders("@m", lastMessageIds.Count)})");
                for (var i = 0; i < lastMessageIds.Count; i++)
                {
                    command.With($"@m{i}", lastMessageIds[i]);
                }

                foreach (var message in await command.ListAsync(r => r.Message(), cancellationToken))
                {
                    lastMessages[message.Id] = message;
                }
            }

            return rows.Select(row =>
            {
                var last = row.Conversation.LastMessageId is { } lastId && lastMessages.TryGetValue(lastId, out var m) ? m : null;
                var snapshot = new ConversationSnapshot(row.Conversation, members.GetValueOrDefault(row.Conversation.Id) ?? []);
                return new ConversationListItem(snapshot, row.Caller, last);
            }).ToList();
        }, cancellationToken);
}

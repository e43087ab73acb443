namespace Parley.Server.Storage;

/// <summary>
/// A message as stored and as clients see it (the API returns the row as it is; see docs/design.md, "The storage
/// seam"). <see cref="Seq"/> is the position of its creation in the conversation. A deleted message is a tombstone:
/// content, mentions, media and location are null and <see cref="DeletedAt"/> is set.
/// </summary>
internal sealed record Message(
    Guid Id,
    Guid ConversationId,
    long Seq,
    string SenderId,
    string MessageType,
    string? Content,
    Guid? ReplyToId,
    IReadOnlyList<Mention>? Mentions,
    Media? Media,
    Location? Location,
    string? ClientMessageId,
    DateTimeOffset CreatedAt,
    DateTimeOffset? EditedAt,
    DateTimeOffset? DeletedAt);

// Mentions, media and location are stored as JSON in their columns (Sql/StorageJsonContext): renaming a property
// changes what is stored and needs a migration for the rows already written.

/// <summary>A mention of a member inside the content, in UTF-16 code units.</summary>
internal sealed record Mention(string UserId, int Offset, int Length);

internal sealed record Media(
    string Url,
    string MimeType,
    long SizeBytes,
    int? Width,
    int? Height,
    long? DurationMs,
    string? FileName,
    string? ThumbnailUrl);

internal sealed record Location(double Latitude, double Longitude, string? Name);

/// <summary>An earlier version of an edited message: what it said from <see cref="CreatedAt"/> until <see cref="ReplacedAt"/>.</summary>
internal sealed record MessageVersion(int Version, string? Content, IReadOnlyList<Mention>? Mentions, DateTimeOffset CreatedAt, DateTimeOffset ReplacedAt);

internal sealed record NewMessage(
    Guid Id,
    Guid ConversationId,
    string SenderId,
    bool SenderIsService,
    string MessageType,
    string? Content,
    Guid? ReplyToId,
    IReadOnlyList<Mention>? Mentions,
    Media? Media,
    Location? Location,
    string? ClientMessageId,
    DateTimeOffset Now);

/// <summary>
/// What the send rules need, read inside the send transaction. <see cref="Existing"/> is an earlier message with the
/// same client_message_id; when it was edited since, <see cref="ExistingOriginal"/> is its first version (what the
/// retried send carried).
/// </summary>
internal sealed record SendFacts(ConversationSnapshot? Conversation, Message? ReplyTarget, Message? Existing, MessageVersion? ExistingOriginal = null);

/// <summary>The stored message; <see cref="Created"/> is false when a retry with the same client_message_id found it.</summary>
internal sealed record SendResult(Message Message, bool Created, IReadOnlyList<MemberRecord> Members);

/// <summary>What edit and delete rules need: the message, its conversation and members.</summary>
internal sealed record MessageFacts(Message Message, ConversationSnapshot Conversation);

/// <summary>The message after an edit or delete; <see cref="Seq"/> is 0 when nothing changed (an idempotent repeat).</summary>
internal sealed record MessageChangeResult(Message Message, long Seq, IReadOnlyList<MemberRecord> Members);

/// <summary>A page of history: messages with <c>seq &gt; VisibleAfterSeq</c>, before or after a seq.</summary>
internal sealed record MessageQuery(Guid ConversationId, long VisibleAfterSeq, long? Before, long? After, int Limit);

namespace Parley.Client;

/// <summary>
/// A message as the server returns it. <see cref="Seq"/> is the position of its creation in the conversation.
/// A deleted message is a tombstone: <see cref="Content"/>, <see cref="Mentions"/>, <see cref="Media"/> and
/// <see cref="Location"/> are null and <see cref="DeletedAt"/> is set.
/// </summary>
public sealed record Message
{
    /// <summary>The message id (a UUIDv7).</summary>
    public Guid Id { get; init; }

    /// <summary>The conversation the message belongs to.</summary>
    public Guid ConversationId { get; init; }

    /// <summary>The position of the message's creation in its conversation.</summary>
    public long Seq { get; init; }

    /// <summary>The user who sent it (the service's user id for messages the service sent).</summary>
    public string SenderId { get; init; } = "";

    /// <summary>One of <see cref="MessageTypes"/>.</summary>
    public string MessageType { get; init; } = "";

    /// <summary>The text (a caption for media and locations); null for tombstones.</summary>
    public string? Content { get; init; }

    /// <summary>The message this one replies to, in the same conversation.</summary>
    public Guid? ReplyToId { get; init; }

    /// <summary>Members mentioned in <see cref="Content"/> (UTF-16 offsets).</summary>
    public IReadOnlyList<Mention>? Mentions { get; init; }

    /// <summary>The media reference of image, video, audio and file messages.</summary>
    public Media? Media { get; init; }

    /// <summary>The location of location messages.</summary>
    public Location? Location { get; init; }

    /// <summary>The sender's idempotency key, when the send carried one.</summary>
    public string? ClientMessageId { get; init; }

    /// <summary>When the server created the message.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When the message was last edited, if ever.</summary>
    public DateTimeOffset? EditedAt { get; init; }

    /// <summary>When the message was deleted; set on tombstones.</summary>
    public DateTimeOffset? DeletedAt { get; init; }
}

/// <summary>A mention of a member inside a message's content, in UTF-16 code units.</summary>
/// <param name="UserId">The member mentioned.</param>
/// <param name="Offset">Where the mention starts in the content.</param>
/// <param name="Length">How long it is.</param>
public sealed record Mention(string UserId, int Offset, int Length);

/// <summary>A reference to a file stored elsewhere (Parley stores the reference, not the file).</summary>
public sealed record Media
{
    /// <summary>Where the file is.</summary>
    public required string Url { get; init; }

    /// <summary>Its MIME type (matching the message type, any for files).</summary>
    public required string MimeType { get; init; }

    /// <summary>Its size in bytes.</summary>
    public required long SizeBytes { get; init; }

    /// <summary>Width in pixels (images, videos).</summary>
    public int? Width { get; init; }

    /// <summary>Height in pixels (images, videos).</summary>
    public int? Height { get; init; }

    /// <summary>Duration in milliseconds (audio, video).</summary>
    public long? DurationMs { get; init; }

    /// <summary>The file's name as shown to users.</summary>
    public string? FileName { get; init; }

    /// <summary>A preview image.</summary>
    public string? ThumbnailUrl { get; init; }
}

/// <summary>A place: latitude in [-90, 90], longitude in [-180, 180].</summary>
/// <param name="Latitude">Degrees north.</param>
/// <param name="Longitude">Degrees east.</param>
/// <param name="Name">An optional label.</param>
public sealed record Location(double Latitude, double Longitude, string? Name = null);

/// <summary>
/// A conversation as the caller sees it: <see cref="UnreadCount"/>, <see cref="ReadUpToSeq"/>,
/// <see cref="LastReadMessageId"/> and <see cref="LastActivityAt"/> are the caller's own.
/// </summary>
public sealed record Conversation
{
    /// <summary>The conversation id (a UUIDv7).</summary>
    public Guid Id { get; init; }

    /// <summary><see cref="ConversationTypes.Direct"/> or <see cref="ConversationTypes.Group"/>.</summary>
    public string Type { get; init; } = "";

    /// <summary>The group's name; null for direct conversations and unnamed groups.</summary>
    public string? Name { get; init; }

    /// <summary>Who created it.</summary>
    public string CreatedBy { get; init; } = "";

    /// <summary>When it was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>The caller's latest activity: a message, or the caller joining.</summary>
    public DateTimeOffset LastActivityAt { get; init; }

    /// <summary>The conversation's latest position.</summary>
    public long LastSeq { get; init; }

    /// <summary>The members.</summary>
    public IReadOnlyList<Participant> Participants { get; init; } = [];

    /// <summary>The latest message the caller may see, or null.</summary>
    public Message? LastMessage { get; init; }

    /// <summary>Messages from others after the caller's read watermark.</summary>
    public int UnreadCount { get; init; }

    /// <summary>The caller's read watermark.</summary>
    public long ReadUpToSeq { get; init; }

    /// <summary>The last message the caller read.</summary>
    public Guid? LastReadMessageId { get; init; }
}

/// <summary>A member of a conversation.</summary>
/// <param name="UserId">The member.</param>
/// <param name="Role">One of <see cref="ParticipantRoles"/>.</param>
/// <param name="JoinedAt">When the member joined (the start of the history they see).</param>
public sealed record Participant(string UserId, string Role, DateTimeOffset JoinedAt);

/// <summary>A page of the caller's conversations, most recent activity first.</summary>
/// <param name="Conversations">The page.</param>
/// <param name="NextCursor">Pass as <c>cursor</c> for the next page; null at the end.</param>
public sealed record ConversationList(IReadOnlyList<Conversation> Conversations, string? NextCursor);

/// <summary>A page of a conversation's messages (tombstones included).</summary>
/// <param name="Messages">The page, newest first (or oldest first when paging with <c>after</c>).</param>
/// <param name="HasMore">Whether another page exists in the same direction.</param>
/// <param name="NextCursor">The seq to pass as <c>before</c> (or <c>after</c>) for the next page; null at the end.</param>
public sealed record MessagePage(IReadOnlyList<Message> Messages, bool HasMore, long? NextCursor);

/// <summary>The earlier versions of an edited message, oldest first.</summary>
/// <param name="MessageId">The message.</param>
/// <param name="Edits">Its earlier versions.</param>
public sealed record MessageEdits(Guid MessageId, IReadOnlyList<MessageVersion> Edits);

/// <summary>What a message said from <see cref="CreatedAt"/> until <see cref="ReplacedAt"/>.</summary>
/// <param name="Version">1 for the original, then 2, 3, ...</param>
/// <param name="Content">The content of that version.</param>
/// <param name="Mentions">Its mentions.</param>
/// <param name="CreatedAt">When the version was written.</param>
/// <param name="ReplacedAt">When an edit replaced it.</param>
public sealed record MessageVersion(int Version, string? Content, IReadOnlyList<Mention>? Mentions, DateTimeOffset CreatedAt, DateTimeOffset ReplacedAt);

/// <summary>The caller's read position in a conversation after marking a message read.</summary>
/// <param name="ConversationId">The conversation.</param>
/// <param name="UserId">The caller.</param>
/// <param name="LastReadMessageId">The last message read.</param>
/// <param name="ReadUpToSeq">The read watermark.</param>
/// <param name="DeliveredUpToSeq">The delivered watermark (read implies delivered).</param>
/// <param name="UnreadCount">Messages from others still unread.</param>
public sealed record ReadState(Guid ConversationId, string UserId, Guid? LastReadMessageId, long ReadUpToSeq, long DeliveredUpToSeq, int UnreadCount);

/// <summary>A user's presence, as <c>GET /api/v1/users/{user_id}/presence</c> returns it.</summary>
public sealed record UserPresence(string UserId, bool Online, DateTimeOffset? LastSeenAt);

/// <summary>The deployment's limits, as <c>GET /api/v1/config</c> returns them.</summary>
public sealed record ClientConfig
{
    /// <summary>Maximum content length in UTF-16 code units.</summary>
    public int MaxContentLength { get; init; }

    /// <summary>How long after sending a message may be edited.</summary>
    public long EditWindowSeconds { get; init; }

    /// <summary>Maximum HTTP request body.</summary>
    public int MaxRequestBytes { get; init; }

    /// <summary>Maximum WebSocket frame a client may send.</summary>
    public int MaxFrameBytes { get; init; }

    /// <summary>Maximum members of a group.</summary>
    public int MaxGroupParticipants { get; init; }

    /// <summary>Maximum mentions in one message.</summary>
    public int MaxMentions { get; init; }

    /// <summary>Maximum length of a group name.</summary>
    public int MaxConversationNameLength { get; init; }

    /// <summary>Maximum page size of list endpoints.</summary>
    public int MaxPageSize { get; init; }

    /// <summary>How often the server pings sockets.</summary>
    public long HeartbeatIntervalMs { get; init; }

    /// <summary>When an unrefreshed typing indicator expires.</summary>
    public long TypingTimeoutMs { get; init; }

    /// <summary>The per-user send rate.</summary>
    public int SendRatePerSecond { get; init; }

    /// <summary>The per-user send burst.</summary>
    public int SendBurst { get; init; }

    /// <summary>Typing indicators are broadcast only in conversations with at most this many members (0 from a server that does not say).</summary>
    public int TypingMaxConversationSize { get; init; }
}

/// <summary>One page of <c>GET /api/v1/sync</c>: the events after a cursor, in stream order.</summary>
/// <param name="Events">Conversation events (including <see cref="HiddenEvent"/>), then receipt watermarks on the last page.</param>
/// <param name="NextCursor">Where the next page starts; once <see cref="HasMore"/> is false, the cursor to keep.</param>
/// <param name="HasMore">Whether another page follows.</param>
public sealed record SyncPage(IReadOnlyList<ParleyEvent> Events, string NextCursor, bool HasMore);

/// <summary>Wire names of message types.</summary>
public static class MessageTypes
{
    /// <summary>Text; <c>content</c> required.</summary>
    public const string Text = "text";

    /// <summary>An image reference.</summary>
    public const string Image = "image";

    /// <summary>A video reference.</summary>
    public const string Video = "video";

    /// <summary>An audio reference.</summary>
    public const string Audio = "audio";

    /// <summary>A file reference.</summary>
    public const string File = "file";

    /// <summary>A location.</summary>
    public const string Location = "location";

    /// <summary>A system message (service role only).</summary>
    public const string System = "system";
}

/// <summary>Wire names of conversation types.</summary>
public static class ConversationTypes
{
    /// <summary>Exactly two users; asking again for the same pair returns the existing conversation.</summary>
    public const string Direct = "direct";

    /// <summary>A group with an owner, admins and members.</summary>
    public const string Group = "group";
}

/// <summary>Wire names of member roles.</summary>
public static class ParticipantRoles
{
    /// <summary>The group's owner.</summary>
    public const string Owner = "owner";

    /// <summary>Manages members.</summary>
    public const string Admin = "admin";

    /// <summary>A plain member.</summary>
    public const string Member = "member";
}

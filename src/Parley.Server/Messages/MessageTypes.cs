namespace Parley.Server.Messages;

/// <summary>Wire names of message types (public API).</summary>
internal static class MessageTypes
{
    public const string Text = "text";
    public const string Image = "image";
    public const string Video = "video";
    public const string Audio = "audio";
    public const string File = "file";
    public const string Location = "location";
    public const string System = "system";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal) { Text, Image, Video, Audio, File, Location, System };

    public static bool IsMedia(string type) => type is Image or Video or Audio or File;
}

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

/// <summary>
/// A message as clients see it. <see cref="Seq"/> is the position of its creation in the conversation.
/// A deleted message is a tombstone: content, mentions, media and location are null and <see cref="DeletedAt"/> is set.
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

internal sealed record MessagePage(IReadOnlyList<Message> Messages, bool HasMore, long? NextCursor);

/// <summary>An earlier version of an edited message: what it said from <see cref="CreatedAt"/> until <see cref="ReplacedAt"/>.</summary>
internal sealed record MessageVersion(int Version, string? Content, IReadOnlyList<Mention>? Mentions, DateTimeOffset CreatedAt, DateTimeOffset ReplacedAt);

internal sealed record MessageEdits(Guid MessageId, IReadOnlyList<MessageVersion> Edits);

// Request bodies: every field nullable so that a missing field is a clear validation error, not a parse failure.
internal sealed class SendMessageRequest
{
    public string? ConversationId { get; set; }

    public string? Content { get; set; }

    public string? MessageType { get; set; }

    public string? ReplyToId { get; set; }

    public List<MentionInput?>? Mentions { get; set; }

    public MediaInput? Media { get; set; }

    public LocationInput? Location { get; set; }

    public string? ClientMessageId { get; set; }
}

internal sealed class EditMessageRequest
{
    public string? Content { get; set; }

    public List<MentionInput?>? Mentions { get; set; }
}

internal sealed class MentionInput
{
    public string? UserId { get; set; }

    public int? Offset { get; set; }

    public int? Length { get; set; }
}

internal sealed class MediaInput
{
    public string? Url { get; set; }

    public string? MimeType { get; set; }

    public long? SizeBytes { get; set; }

    public int? Width { get; set; }

    public int? Height { get; set; }

    public long? DurationMs { get; set; }

    public string? FileName { get; set; }

    public string? ThumbnailUrl { get; set; }
}

internal sealed class LocationInput
{
    public double? Latitude { get; set; }

    public double? Longitude { get; set; }

    public string? Name { get; set; }
}

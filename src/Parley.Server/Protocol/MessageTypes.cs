using Parley.Server.Storage;

namespace Parley.Server.Protocol;

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

internal sealed record MessagePage(IReadOnlyList<Message> Messages, bool HasMore, long? NextCursor);

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

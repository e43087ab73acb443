using System.Text.RegularExpressions;
using Parley.Server.Hosting;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Messages;

/// <summary>The shape rules of a message (no database needed); errors are collected per field in snake_case.</summary>
internal sealed partial class MessageValidation(LimitsOptions limits)
{
    public const int MaxUrlLength = 2048;
    public const int MaxClientMessageIdLength = 64;

    public sealed record ValidatedSend(
        Guid ConversationId, string MessageType, string? Content, Guid? ReplyToId, IReadOnlyList<Mention>? Mentions, Media? Media,
        Location? Location, string? ClientMessageId);

    public Result<ValidatedSend> ValidateSend(SendMessageRequest? request, bool callerIsService)
    {
        if (request is null)
        {
            return ApiError.BodyRequired();
        }

        var errors = new FieldErrors();
        var conversationId = errors.RequiredUuid("conversation_id", request.ConversationId);
        var type = request.MessageType;
        if (string.IsNullOrEmpty(type))
        {
            errors.Add("message_type", "is required");
        }
        else if (!MessageTypes.All.Contains(type))
        {
            errors.Add("message_type", "must be one of text, image, video, audio, file, location, system");
        }
        else if (type == MessageTypes.System && !callerIsService)
        {
            return ApiError.Forbidden("Only the service role may send system messages.");
        }

        var content = string.IsNullOrEmpty(request.Content) ? null : request.Content;
        if (type is MessageTypes.Text or MessageTypes.System && string.IsNullOrWhiteSpace(content))
        {
            errors.Add("content", $"is required for {type} messages");
        }

        CheckContent(errors, content);

        Media? media = null;
        if (type is not null && MessageTypes.IsMedia(type))
        {
            media = ValidateMedia(errors, request.Media, type);
        }
        else if (request.Media is not null)
        {
            errors.Add("media", "is only allowed for image, video, audio and file messages");
        }

        Location? location = null;
        if (type == MessageTypes.Location)
        {
            location = ValidateLocation(errors, request.Location);
        }
        else if (request.Location is not null)
        {
            errors.Add("location", "is only allowed for location messages");
        }

        var replyTo = errors.OptionalUuid("reply_to_id", request.ReplyToId);
        var mentions = ValidateMentions(errors, request.Mentions, content);
        var clientMessageId = request.ClientMessageId;
        if (clientMessageId is not null && !IsValidClientMessageId(clientMessageId))
        {
            errors.Add("client_message_id", "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'");
        }

        return errors.Any
            ? errors.ToError()
            : new ValidatedSend(conversationId, type!, content, replyTo, mentions, media, location, clientMessageId);
    }

    public Result<(string? Content, IReadOnlyList<Mention>? Mentions)> ValidateEdit(EditMessageRequest? request, string messageType)
    {
        if (request is null)
        {
            return ApiError.BodyRequired();
        }

        var errors = new FieldErrors();
        // As on send: no caption is null, never "", so removing a caption and an empty edit of an uncaptioned
        // message mean the same thing (and the latter changes nothing).
        var content = string.IsNullOrEmpty(request.Content) ? null : request.Content;
        if (messageType is MessageTypes.Text or MessageTypes.System && string.IsNullOrWhiteSpace(content))
        {
            errors.Add("content", "is required");
        }

        CheckContent(errors, content);
        var mentions = ValidateMentions(errors, request.Mentions, content);
        return errors.Any ? errors.ToError() : (content, mentions);
    }

    public static bool IsValidClientMessageId(string value) =>
        value.Length is >= 1 and <= MaxClientMessageIdLength && ClientMessageIdPattern().IsMatch(value);

    private void CheckContent(FieldErrors errors, string? content)
    {
        // Length counts UTF-16 code units, as JavaScript's String.length does: what clients measure.
        if (content is not null && content.Length > limits.MaxContentLength)
        {
            errors.Add("content", $"must be at most {limits.MaxContentLength} UTF-16 code units");
        }

        errors.CheckText("content", content, multiLine: true);
    }

    private IReadOnlyList<Mention>? ValidateMentions(FieldErrors errors, List<MentionInput?>? input, string? content)
    {
        if (input is null || input.Count == 0)
        {
            return null;
        }

        if (input.Count > limits.MaxMentions)
        {
            errors.Add("mentions", $"must have at most {limits.MaxMentions} entries");
            return null;
        }

        var length = content?.Length ?? 0;
        var mentions = new List<Mention>(input.Count);
        for (var i = 0; i < input.Count; i++)
        {
            var m = input[i];
            var field = $"mentions[{i}]";
            if (m is null)
            {
                errors.Add(field, "must be an object");
                continue;
            }

            if (!Identifiers.IsValidUserId(m.UserId))
            {
                errors.Add($"{field}.user_id", "must be a well-formed user id");
            }

            if (m.Offset is not { } offset || m.Length is not { } len || offset < 0 || len < 1 || (long)offset + len > length)
            {
                errors.Add(field, "offset and length must select a non-empty range inside content (UTF-16 code units)");
                continue;
            }

            var mention = new Mention(m.UserId!, offset, len);
            if (mentions.Contains(mention))
            {
                errors.Add(field, "repeats an earlier mention (same user_id, offset and length)");
                continue;
            }

            mentions.Add(mention);
        }

        return mentions;
    }

    private static Media? ValidateMedia(FieldErrors errors, MediaInput? input, string type)
    {
        if (input is null)
        {
            errors.Add("media", $"is required for {type} messages");
            return null;
        }

        var before = errors.Count;
        if (errors.CheckText("media.url", input.Url) && !IsHttpUrl(input.Url))
        {
            errors.Add("media.url", $"must be an absolute http(s) URL of at most {MaxUrlLength} characters");
        }

        var mime = input.MimeType;
        if (string.IsNullOrEmpty(mime) || mime.Length > 255 || !MimeTypePattern().IsMatch(mime))
        {
            errors.Add("media.mime_type", "is required, as type/subtype (RFC 6838 names, parameters after ';' allowed)");
        }
        else if (errors.CheckText("media.mime_type", mime) && type != MessageTypes.File && !mime.StartsWith(type + "/", StringComparison.OrdinalIgnoreCase))
        {
            errors.Add("media.mime_type", $"must be {type}/* for {type} messages");
        }

        if (input.SizeBytes is not >= 0)
        {
            errors.Add("media.size_bytes", "is required and must not be negative");
        }

        if (input.Width is <= 0 || input.Height is <= 0)
        {
            errors.Add("media", "width and height must be positive when given");
        }

        if (input.DurationMs is < 0)
        {
            errors.Add("media.duration_ms", "must not be negative");
        }

        if (input.FileName is { } fileName && (fileName.Length > 255 || string.IsNullOrWhiteSpace(fileName)))
        {
            errors.Add("media.file_name", "must be 1-255 characters, not all white space, when given");
        }
        else
        {
            errors.CheckText("media.file_name", input.FileName);
        }

        if (errors.CheckText("media.thumbnail_url", input.ThumbnailUrl) && input.ThumbnailUrl is not null && !IsHttpUrl(input.ThumbnailUrl))
        {
            errors.Add("media.thumbnail_url", $"must be an absolute http(s) URL of at most {MaxUrlLength} characters");
        }

        return errors.Count > before
            ? null
            : new Media(input.Url!, mime!, input.SizeBytes!.Value, input.Width, input.Height, input.DurationMs, input.FileName, input.ThumbnailUrl);
    }

    private static Location? ValidateLocation(FieldErrors errors, LocationInput? input)
    {
        if (input is null)
        {
            errors.Add("location", "is required for location messages");
            return null;
        }

        var before = errors.Count;
        if (input.Latitude is not { } lat || !double.IsFinite(lat) || lat is < -90 or > 90)
        {
            errors.Add("location.latitude", "is required, between -90 and 90");
        }

        if (input.Longitude is not { } lon || !double.IsFinite(lon) || lon is < -180 or > 180)
        {
            errors.Add("location.longitude", "is required, between -180 and 180");
        }

        if (input.Name is { } name && (name.Length > 256 || string.IsNullOrWhiteSpace(name)))
        {
            errors.Add("location.name", "must be 1-256 characters, not all white space, when given");
        }
        else
        {
            errors.CheckText("location.name", input.Name);
        }

        return errors.Count > before ? null : new Location(input.Latitude!.Value, input.Longitude!.Value, input.Name);
    }

    private static bool IsHttpUrl(string? value) =>
        value is { Length: > 0 and <= MaxUrlLength }
        && Uri.TryCreate(value, UriKind.Absolute, out var uri)
        && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp);

    [GeneratedRegex(@"^[A-Za-z0-9._:-]+\z")]
    private static partial Regex ClientMessageIdPattern();

    // RFC 6838 restricted names for type and subtype, or the wildcards clients pass on when they know no better (a share
    // sheet's */* or image/*); anything after ';' (parameters) is checked as text only.
    [GeneratedRegex(@"^(\*/\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}))(\s*;.*)?\z", RegexOptions.Singleline)]
    private static partial Regex MimeTypePattern();
}

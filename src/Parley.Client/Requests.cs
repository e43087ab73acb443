namespace Parley.Client;

/// <summary>The body of <c>POST /api/v1/conversations</c>.</summary>
public sealed record CreateConversationRequest
{
    /// <summary><see cref="ConversationTypes.Direct"/> or <see cref="ConversationTypes.Group"/>.</summary>
    public required string Type { get; init; }

    /// <summary>The other members (the caller is always a member, except for the service role).</summary>
    public required IReadOnlyList<string> ParticipantIds { get; init; }

    /// <summary>The group's name (groups only).</summary>
    public string? Name { get; init; }

    /// <summary>Service role only: the member who owns a group created on a user's behalf.</summary>
    public string? OwnerId { get; init; }

    /// <summary>A direct conversation with <paramref name="otherUserId"/>.</summary>
    public static CreateConversationRequest Direct(string otherUserId) =>
        new() { Type = ConversationTypes.Direct, ParticipantIds = [otherUserId] };

    /// <summary>A group of the caller and <paramref name="participantIds"/>.</summary>
    public static CreateConversationRequest Group(string? name, params IReadOnlyList<string> participantIds) =>
        new() { Type = ConversationTypes.Group, Name = name, ParticipantIds = participantIds };
}

/// <summary>
/// A message to send, over REST (<see cref="ParleyClient.SendMessageAsync"/>) or over the socket
/// (<see cref="ParleyRealtime.SendAsync"/>).
/// </summary>
public sealed record SendMessageRequest
{
    /// <summary>The conversation to send to.</summary>
    public required Guid ConversationId { get; init; }

    /// <summary>One of <see cref="MessageTypes"/>; text by default.</summary>
    public string MessageType { get; init; } = MessageTypes.Text;

    /// <summary>The text (required for text and system messages, a caption otherwise).</summary>
    public string? Content { get; init; }

    /// <summary>A message of the same conversation this one replies to.</summary>
    public Guid? ReplyToId { get; init; }

    /// <summary>Members mentioned in <see cref="Content"/>.</summary>
    public IReadOnlyList<Mention>? Mentions { get; init; }

    /// <summary>The media reference of image, video, audio and file messages.</summary>
    public Media? Media { get; init; }

    /// <summary>The location of location messages.</summary>
    public Location? Location { get; init; }

    /// <summary>
    /// The idempotency key (1–64 of <c>[A-Za-z0-9._:-]</c>): a retry with the same key returns the original message.
    /// <see cref="ParleyRealtime.SendAsync"/> generates one when it is null, once per request object. A copy made
    /// with <c>with</c> keeps a key that was set: give each new message its own.
    /// </summary>
    public string? ClientMessageId { get; init; }

    /// <summary>A text message.</summary>
    public static SendMessageRequest Text(Guid conversationId, string content, string? clientMessageId = null) =>
        new() { ConversationId = conversationId, Content = content, ClientMessageId = clientMessageId };
}

/// <summary>The body of <c>PUT /api/v1/messages/{id}</c>.</summary>
/// <param name="Content">The new content.</param>
/// <param name="Mentions">The new mentions.</param>
public sealed record EditMessageRequest(string Content, IReadOnlyList<Mention>? Mentions = null);

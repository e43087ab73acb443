using System.Text.Json;
using System.Text.Json.Serialization;

namespace Parley.Server.Protocol;

// Bodies of REST answers that are not conversations or messages.

/// <summary>The caller's read position in a conversation, as returned by POST /messages/{id}/read.</summary>
internal sealed record ReadState(Guid ConversationId, string UserId, Guid? LastReadMessageId, long ReadUpToSeq, long DeliveredUpToSeq, int UnreadCount);

/// <summary>Read and delivered watermarks: they only move forward, and read implies delivered.</summary>

/// <summary>
/// A health report: the overall status (<c>Healthy</c>, <c>Degraded</c> or <c>Unhealthy</c>) and, per dependency
/// checked (<c>storage</c>), its status, why it is not healthy (null when it is) and how long the check took.
/// </summary>
/// <summary>A user's presence: online while any device is connected; otherwise when the last one disconnected (null if unknown).</summary>
internal sealed record UserPresenceView(string UserId, bool Online, DateTimeOffset? LastSeenAt);

internal sealed record HealthReportResponse(string Status, double TotalDurationMs, IReadOnlyList<HealthCheckEntry> Checks);

internal sealed record HealthCheckEntry(string Name, string Status, string? Description, double DurationMs);

/// <summary>A page of REST catch-up: the same frames the socket carries, in the same order.</summary>
internal sealed record SyncPage(IReadOnlyList<RawFrame> Events, string NextCursor, bool HasMore);

internal sealed record CursorResponse(string Cursor);

/// <summary>A frame's serialized bytes, written into the response as they are (never parsed back).</summary>
[JsonConverter(typeof(RawFrameConverter))]
internal sealed record RawFrame(ReadOnlyMemory<byte> Utf8);

internal sealed class RawFrameConverter : JsonConverter<RawFrame>
{
    public override RawFrame Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        return new RawFrame(System.Text.Encoding.UTF8.GetBytes(document.RootElement.GetRawText()));
    }

    public override void Write(Utf8JsonWriter writer, RawFrame value, JsonSerializerOptions options) => writer.WriteRawValue(value.Utf8.Span, skipInputValidation: true);
}

/// <summary>What clients need to know about this deployment's limits.</summary>
internal sealed record ClientConfig(
    int MaxContentLength,
    long EditWindowSeconds,
    int MaxRequestBytes,
    int MaxFrameBytes,
    int MaxGroupParticipants,
    int MaxMentions,
    int MaxConversationNameLength,
    int MaxPageSize,
    long HeartbeatIntervalMs,
    long TypingTimeoutMs,
    int SendRatePerSecond,
    int SendBurst,
    int TypingMaxConversationSize);

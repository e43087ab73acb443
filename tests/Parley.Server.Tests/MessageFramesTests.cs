using System.Text;
using Parley.Server.Broadcasting;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Tests;

/// <summary>
/// <c>new_message</c> and <c>message_ack</c> are written by hand (MessageFrames): they must be byte for byte what the
/// serializer makes of their payload records, for every shape a message can take.
/// </summary>
[Trait("Store", "Independent")]
public sealed class MessageFramesTests
{
    private static readonly DateTimeOffset Created = new(2026, 12, 6, 7, 8, 9, TimeSpan.Zero);

    public static TheoryData<string> Shapes() => [.. Messages.Keys];

    private static readonly Dictionary<string, Message> Messages = new()
    {
        ["bare"] = Text("hello"),
        ["every field set"] = Text("hi @bob, look <here> & \"there\" \u2028 é 😀") with
        {
            ReplyToId = Guid.Parse("0193a0b4-0000-7000-8000-000000000001"),
            Mentions = [new Mention("bob", 3, 4), new Mention("user with \"quotes\"", 0, 2)],
            Media = new Media("https://cdn.example/a b.png?x=1&y=2", "image/png", 123_456_789_012, 640, 480, 98_765, "a \"b\".png", "https://cdn.example/t.png"),
            Location = new Location(52.520008, -13.404954e-3, "Café \"Mitte\""),
            ClientMessageId = "client-1\t\n",
            EditedAt = Created.AddMilliseconds(1_234.5678),
            DeletedAt = Created.AddHours(-30).ToOffset(TimeSpan.FromHours(5.5)),
        },
        ["media with nulls"] = Text(null) with
        {
            MessageType = "image",
            Media = new Media("https://cdn.example/v.mp4", "video/mp4", 0, null, null, null, null, null),
        },
        ["location without a name, extreme numbers"] = Text(null) with
        {
            MessageType = "location",
            Location = new Location(-90, 180, null),
            Seq = long.MaxValue,
        },
        ["empty mentions"] = Text(string.Empty) with { Mentions = [] },
        ["deleted"] = Text(null) with { DeletedAt = Created.AddTicks(9_999), SenderId = "über-user" },
        ["long content"] = Text(new string('x', 70_000) + "\u0001"),
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void NewMessage_IsWhatTheSerializerWrites(string shape)
    {
        var message = Messages[shape];
        var timestamp = Created.AddMilliseconds(17.25);

        var expected = FrameWriter.Serialize(FrameTypes.NewMessage, new NewMessagePayload(message, timestamp), ParleyJsonContext.Default.NewMessagePayload);

        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(EventFrames.NewMessage(message, timestamp).Utf8.Span));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MessageAck_IsWhatTheSerializerWrites(string shape)
    {
        var message = Messages[shape];

        var expected = FrameWriter.Serialize(
            FrameTypes.MessageAck, new MessageAckPayload("retry \"7\" é", message), ParleyJsonContext.Default.MessageAckPayload);

        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(Frames.MessageAck("retry \"7\" é", message).Utf8.Span));
    }

    [Fact]
    public void EveryPropertyOfAMessage_IsWritten()
    {
        // A property the serializer knows and the hand-written frame lacks shows here even for a shape the theories miss.
        var written = System.Text.Json.JsonDocument.Parse(EventFrames.NewMessage(Messages["every field set"], Created).Utf8)
            .RootElement.GetProperty("payload").GetProperty("message").EnumerateObject().Select(p => p.Name);

        Assert.Equal(ParleyJsonContext.Default.Message.Properties.Select(p => p.Name), written);
    }

    private static Message Text(string? content) =>
        new(
            Guid.Parse("0193a0b4-1111-7000-8000-00000000000a"),
            Guid.Parse("0193a0b4-2222-7000-8000-00000000000b"),
            42,
            "alice",
            "text",
            content,
            null,
            null,
            null,
            null,
            null,
            Created,
            null,
            null);

    [Fact]
    public void Presence_IsTransient_NotHeldBackDuringACatchUp()
    {
        // Held with the live events, presence changes of a well-connected user's contacts counted against a resuming
        // socket's hold list, and could close it with 4001 in a reconnect storm.
        Assert.True(Parley.Server.Broadcasting.EventFrames.Presence("alice", online: true, lastSeenAt: null, DateTimeOffset.UtcNow).Transient);
    }
}

using System.Reflection;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Events;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The relay's records, byte for byte and with their event ids, as published so far (docs/events.md): a republished
/// record must carry the same <c>event_id</c> as before, across versions too, or consumers cannot de-duplicate it; and
/// building them faster must not change a byte of what consumers read.
/// </summary>
[Trait("Store", "Independent")]
public sealed class EventRecordBytesTests
{
    private static readonly DateTimeOffset At = new(2026, 12, 6, 7, 8, 9, 123, TimeSpan.Zero);
    private static readonly Guid Conversation = Guid.Parse("0193a0b4-0000-7000-8000-0000000000c1");
    private static readonly Guid MessageId = Guid.Parse("0193a0b4-0000-7000-8000-0000000000a1");

    private static readonly Message Sent = new(
        MessageId, Conversation, 2, "alice", "text", "hi @bob, \"quoted\" é 😀 <b>", Guid.Parse("0193a0b4-0000-7000-8000-0000000000a0"),
        [new Mention("bob", 3, 4)],
        new Media("https://cdn.example/a.png", "image/png", 1234, 64, 48, null, "a.png", null),
        new Location(52.5, 13.4, "Mitte"),
        "c-1", At, At.AddSeconds(5).ToOffset(TimeSpan.FromHours(2)), null);

    private static OutboxEvent Event(long seq, string type, Guid? message = null, string actor = "alice", string? user = null, string? role = null,
        IReadOnlyList<RosterEntry>? roster = null) =>
        new(new ConversationEvent(Conversation, seq, type, message, actor, user, role, At.AddMilliseconds(seq)), 100 + seq, roster);

    private static OutboxBatch Batch() => new(
        [
            Event(1, EventTypes.ConversationCreated, roster: [new RosterEntry("alice", "owner"), new RosterEntry("bob", "member")]),
            Event(2, EventTypes.MessageCreated, MessageId),
            Event(3, EventTypes.MessageEdited, MessageId),
            Event(4, EventTypes.MessageDeleted, MessageId, actor: "bob"),
            Event(5, EventTypes.ParticipantAdded, user: "carol", role: "admin"),
            Event(6, EventTypes.ParticipantUpdated, user: "carol", role: "member"),
            Event(7, EventTypes.ParticipantRemoved, user: "carol", role: "member"),
        ],
        [
            new ReceiptLogEntry(41, 41, Conversation, "bob", ReceiptKinds.Delivered, 2, MessageId, At.AddSeconds(1)),
            new ReceiptLogEntry(42, 42, Conversation, "user \"b\" é", ReceiptKinds.Read, 2, MessageId, At.AddSeconds(2).ToOffset(TimeSpan.FromHours(-3))),
        ],
        107,
        42,
        new Dictionary<Guid, Message> { [MessageId] = Sent },
        new Dictionary<Guid, ConversationRecord> { [Conversation] = new(Conversation, "group", "Launch \"Q1\"", "alice", At, At, 7, MessageId) },
        new Dictionary<(Guid, long), IReadOnlyList<string>> { [(Conversation, 2)] = ["bob", "dave"] });

    [Fact]
    public async Task Records_AreTheBytesAndIdsPublishedSoFar()
    {
        var builder = new EventRecordBuilder(Unread.Store(), new Online("bob"), new NotificationOptions { PreviewLength = 5 }, new FakeTimeProvider(At.AddMinutes(1)));

        var records = await builder.BuildAsync(Batch(), TestContext.Current.CancellationToken);

        var actual = records.Select(r => $"{r.Topic} {r.Key} {r.EventId} {r.Type} {r.Version} {Encoding.UTF8.GetString(r.Body)}").ToList();
        Assert.Equal(Expected, actual);
    }

    [Theory]
    [InlineData(128, "é")]
    [InlineData(64, "😀")]
    [InlineData(128, "\u2028")]
    public async Task LongestUserIds_KeepTheirIds(int count, string unit)
    {
        // Identities longer than the stack buffer the ids are hashed from: the same id as any other way of hashing them.
        var userId = string.Concat(Enumerable.Repeat(unit, count));
        var receipt = new ReceiptLogEntry(long.MaxValue, 1, Conversation, userId, ReceiptKinds.Delivered, long.MaxValue, MessageId, At);
        var batch = Batch() with { Changes = [], WatermarkMoves = [receipt] };
        var builder = new EventRecordBuilder(Unread.Store(), new Online(), new NotificationOptions(), new FakeTimeProvider(At.AddMinutes(1)));

        var record = Assert.Single(await builder.BuildAsync(batch, TestContext.Current.CancellationToken));

        Assert.Equal(NameBasedId($"receipt:{long.MaxValue}:{Conversation:N}:{userId}:delivered:{long.MaxValue}"), record.EventId);
    }

    [Theory]
    [InlineData("hello world", "hello")]
    [InlineData("\U0001F468\u200D\U0001F469\u200D\U0001F467 family", "\U0001F468\u200D\U0001F469\u200D\U0001F467")] // 8 code units, one element
    [InlineData("e\u0301e\u0301e\u0301", "e\u0301e\u0301")]
    public async Task Preview_CutsBetweenTextElements_KeepingAtLeastTheFirst(string content, string preview)
    {
        var batch = Batch() with { Messages = new Dictionary<Guid, Message> { [MessageId] = Sent with { Content = content } } };
        var builder = new EventRecordBuilder(Unread.Store(), new Online("bob"), new NotificationOptions { PreviewLength = 5 }, new FakeTimeProvider(At.AddMinutes(1)));

        var notification = Assert.Single(await builder.BuildAsync(batch, TestContext.Current.CancellationToken), r => r.Topic == EventTopic.Notifications);

        Assert.Equal(preview, notification.Payload().GetProperty("preview").GetString());
        Assert.True(notification.Payload().GetProperty("preview_truncated").GetBoolean());
    }

    [Fact]
    public async Task Notifications_ForASinkThatTakesNone_AreNotBuilt()
    {
        var devices = new Online();
        var forNone = new EventRecordBuilder(Unread.Store(), devices, new NotificationOptions(), new FakeTimeProvider(At.AddMinutes(1)), buildNotifications: false);

        var records = await forNone.BuildAsync(Batch(), TestContext.Current.CancellationToken);

        Assert.DoesNotContain(records, r => r.Topic == EventTopic.Notifications);
        Assert.Equal(0, devices.Asked); // nor who is online asked: the reads notifications cost are skipped
        Assert.Contains(records, r => r.Type == RecordTypes.MessageCreated);
    }

    [Fact]
    public async Task Notifications_OfAMessageOlderThanMaxAgeWhenPublished_AreLeftOut()
    {
        var options = new NotificationOptions { MaxAge = TimeSpan.FromHours(1) };
        var late = new EventRecordBuilder(Unread.Store(), new Online(), options, new FakeTimeProvider(Sent.CreatedAt + TimeSpan.FromHours(1.01)));
        var inTime = new EventRecordBuilder(Unread.Store(), new Online(), options, new FakeTimeProvider(Sent.CreatedAt + TimeSpan.FromHours(0.99)));

        var lateRecords = await late.BuildAsync(Batch(), TestContext.Current.CancellationToken);
        var inTimeRecords = await inTime.BuildAsync(Batch(), TestContext.Current.CancellationToken);

        Assert.DoesNotContain(lateRecords, r => r.Topic == EventTopic.Notifications);
        Assert.Equal(["bob", "dave"], inTimeRecords.Where(r => r.Topic == EventTopic.Notifications).Select(r => r.Key));
        Assert.Equal(inTimeRecords.Where(r => r.Topic == EventTopic.Events).Select(r => r.EventId), lateRecords.Select(r => r.EventId));
    }

    /// <summary>A version 8 UUID from the first 16 bytes of the SHA-256 of the record's identity in UTF-8 (docs/events.md).</summary>
    private static string NameBasedId(string identity)
    {
        var hash = System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(identity));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true).ToString();
    }

    private static readonly string[] Expected =
    [
        """Events 0193a0b4-0000-7000-8000-0000000000c1 c8b25c31-7bff-831e-b251-a6147a2f72a3 conversation.created 1 {"event_id":"c8b25c31-7bff-831e-b251-a6147a2f72a3","type":"conversation.created","version":1,"occurred_at":"2026-12-06T07:08:09.124Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":1,"pos":101,"payload":{"conversation_type":"group","name":"Launch \u0022Q1\u0022","created_by":"alice","members":[{"user_id":"alice","role":"owner"},{"user_id":"bob","role":"member"}]}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 b09a13b3-13f5-84a6-b22f-3ccdf6487001 message.created 1 {"event_id":"b09a13b3-13f5-84a6-b22f-3ccdf6487001","type":"message.created","version":1,"occurred_at":"2026-12-06T07:08:09.125Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":2,"pos":102,"payload":{"message_id":"0193a0b4-0000-7000-8000-0000000000a1","sender_id":"alice","message_type":"text","content":"hi @bob, \u0022quoted\u0022 \u00E9 \uD83D\uDE00 \u003Cb\u003E","reply_to_id":"0193a0b4-0000-7000-8000-0000000000a0","mentions":[{"user_id":"bob","offset":3,"length":4}],"media":{"url":"https://cdn.example/a.png","mime_type":"image/png","size_bytes":1234,"width":64,"height":48,"duration_ms":null,"file_name":"a.png","thumbnail_url":null},"location":{"latitude":52.5,"longitude":13.4,"name":"Mitte"},"created_at":"2026-12-06T07:08:09.123Z","edited_at":"2026-12-06T07:08:14.123Z","deleted_at":null}}""",
        """Notifications dave cfa98943-2e18-8326-ab54-ad6a2feb6c92 notification.message 1 {"event_id":"cfa98943-2e18-8326-ab54-ad6a2feb6c92","type":"notification.message","version":1,"occurred_at":"2026-12-06T07:08:09.125Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":2,"pos":102,"payload":{"user_id":"dave","conversation_type":"group","conversation_name":"Launch \u0022Q1\u0022","message_id":"0193a0b4-0000-7000-8000-0000000000a1","sender_id":"alice","message_type":"text","preview":"hi @b","preview_truncated":true,"mentioned":false,"unread_count":3}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 e162eca1-aeb7-8f68-b718-15cc1680aa49 message.edited 1 {"event_id":"e162eca1-aeb7-8f68-b718-15cc1680aa49","type":"message.edited","version":1,"occurred_at":"2026-12-06T07:08:09.126Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":3,"pos":103,"payload":{"message_id":"0193a0b4-0000-7000-8000-0000000000a1","actor_id":"alice","content":"hi @bob, \u0022quoted\u0022 \u00E9 \uD83D\uDE00 \u003Cb\u003E","mentions":[{"user_id":"bob","offset":3,"length":4}],"edited_at":"2026-12-06T07:08:14.123Z","deleted_at":null}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 9a053fec-c1bb-8217-8c2f-990765647f1f message.deleted 1 {"event_id":"9a053fec-c1bb-8217-8c2f-990765647f1f","type":"message.deleted","version":1,"occurred_at":"2026-12-06T07:08:09.127Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":4,"pos":104,"payload":{"message_id":"0193a0b4-0000-7000-8000-0000000000a1","actor_id":"bob"}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 00e6aef9-658b-876a-83bf-27a406f8b350 participant.added 1 {"event_id":"00e6aef9-658b-876a-83bf-27a406f8b350","type":"participant.added","version":1,"occurred_at":"2026-12-06T07:08:09.128Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":5,"pos":105,"payload":{"user_id":"carol","role":"admin","actor_id":"alice"}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 9fd2ab60-3181-8d1e-b1fe-d74fba8c6fd8 participant.role_changed 1 {"event_id":"9fd2ab60-3181-8d1e-b1fe-d74fba8c6fd8","type":"participant.role_changed","version":1,"occurred_at":"2026-12-06T07:08:09.129Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":6,"pos":106,"payload":{"user_id":"carol","role":"member","actor_id":"alice"}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 531137e5-6ec5-8a37-8e29-17383a62e6d1 participant.removed 1 {"event_id":"531137e5-6ec5-8a37-8e29-17383a62e6d1","type":"participant.removed","version":1,"occurred_at":"2026-12-06T07:08:09.130Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":7,"pos":107,"payload":{"user_id":"carol","role":null,"actor_id":"alice"}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 de7f9ac9-2577-8509-9b7e-e455291b5d71 receipt.delivered 1 {"event_id":"de7f9ac9-2577-8509-9b7e-e455291b5d71","type":"receipt.delivered","version":1,"occurred_at":"2026-12-06T07:08:10.123Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":2,"pos":null,"payload":{"user_id":"bob","message_id":"0193a0b4-0000-7000-8000-0000000000a1"}}""",
        """Events 0193a0b4-0000-7000-8000-0000000000c1 acd4036e-3de0-8403-91d2-308c2cce2820 receipt.read 1 {"event_id":"acd4036e-3de0-8403-91d2-308c2cce2820","type":"receipt.read","version":1,"occurred_at":"2026-12-06T07:08:11.123Z","conversation_id":"0193a0b4-0000-7000-8000-0000000000c1","seq":2,"pos":null,"payload":{"user_id":"user \u0022b\u0022 \u00E9","message_id":"0193a0b4-0000-7000-8000-0000000000a1"}}""",
    ];

    [Theory]
    [InlineData(true, 11, 7, 107, 2, 42, false)] // 7 events, 2 notification candidates, 2 receipts: 11 at most
    [InlineData(true, 10, 7, 107, 1, 41, true)] // one receipt too many
    [InlineData(true, 9, 7, 107, 0, 40, true)] // the events fill it: no receipt
    [InlineData(true, 3, 1, 101, 0, 40, true)] // the message and its candidates would pass it: cut before it
    [InlineData(true, 1, 1, 101, 0, 40, true)]
    [InlineData(false, 9, 7, 107, 2, 42, false)] // a sink without notifications counts none
    [InlineData(false, 2, 2, 102, 0, 40, true)]
    public async Task Bounded_CutsTheBatchAtTheRecordsItMayCarry_PositionsMovedBackToMatch(
        bool notifications, int maxRecords, int events, long uptoPos, int receipts, long uptoReceiptPos, bool cut)
    {
        var builder = new EventRecordBuilder(
            Unread.Store(), new Online(), new NotificationOptions(), new FakeTimeProvider(At.AddMinutes(1)), buildNotifications: notifications);

        var (bounded, wasCut) = builder.Bounded(Batch(), maxRecords, afterReceiptPos: 40);
        var records = await builder.BuildAsync(bounded, TestContext.Current.CancellationToken);

        Assert.Equal((events, uptoPos, receipts, uptoReceiptPos, cut), (bounded.Changes.Count, bounded.UptoPos, bounded.WatermarkMoves.Count, bounded.UptoReceiptPos, wasCut));
        Assert.Equal(Batch().Changes.Take(events).Select(e => e.Pos), bounded.Changes.Select(e => e.Pos));
        Assert.True(records.Count <= Math.Max(maxRecords, 3), $"{records.Count} records"); // the first event always goes, with its notifications
    }

    /// <summary>Only <c>dave</c>'s notification goes out: bob has a device connected.</summary>
    private sealed class Online(params string[] users) : IDeviceDirectory
    {
        public int Asked { get; private set; }

        public ValueTask<IReadOnlySet<string>> OnlineAmongAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
        {
            Asked++;
            return ValueTask.FromResult<IReadOnlySet<string>>(userIds.Intersect(users).ToHashSet());
        }
    }

    /// <summary>The two store reads a notification needs (unread badge, conversation); any other call fails the test.</summary>
#pragma warning disable CA1852 // DispatchProxy.Create refuses a sealed proxy type
    internal class Unread : DispatchProxy
#pragma warning restore CA1852
    {
        public static IChatStore Store() => Create<IChatStore, Unread>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) => targetMethod?.Name switch
        {
            nameof(IChatStore.GetUnreadTotalsAsync) => Task.FromResult<IReadOnlyDictionary<string, long>>(
                ((IReadOnlyCollection<string>)args![0]!).ToDictionary(u => u, _ => 3L)),
            nameof(IChatStore.GetConversationRecordsAsync) => Task.FromResult<IReadOnlyDictionary<Guid, ConversationRecord>>(
                new Dictionary<Guid, ConversationRecord> { [Conversation] = new(Conversation, "group", "Launch \"Q1\"", "alice", At, At, 7, MessageId) }),
            _ => throw new InvalidOperationException($"Unexpected store call {targetMethod?.Name}"),
        };
    }
}

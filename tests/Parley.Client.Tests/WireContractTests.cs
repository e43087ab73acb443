using System.Text;
using System.Text.Json;
using Parley.Client.Protocol;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// The client against docs/wire-contract.json, which the server's own types generate (WireContractTests in
/// tests/Parley.Server.Tests): the client reads every frame the server sends by the server's field names, writes
/// only frames and fields the server reads, and names every error code and close code as the server does.
/// </summary>
[Trait("Store", "Independent")]
public sealed class WireContractTests
{
    private static readonly JsonElement Contract = JsonDocument.Parse(File.ReadAllText(Path.Combine(SourceFacts.RepositoryRoot(), "docs", "wire-contract.json"))).RootElement;

    /// <summary>Frames the client may ignore: it measures nothing with pings, so their answers carry nothing for it.</summary>
    private static readonly string[] Ignored = [FrameTypes.Pong];

    /// <summary>REST answers, read whole: the client's records carry every field the server writes.</summary>
    private static readonly Dictionary<string, Type> Answers = new()
    {
        ["message"] = typeof(Message),
        ["mention"] = typeof(Mention),
        ["media"] = typeof(Media),
        ["location"] = typeof(Location),
        ["message_version"] = typeof(MessageVersion),
        ["message_edits"] = typeof(MessageEdits),
        ["message_page"] = typeof(MessagePage),
        ["participant"] = typeof(Participant),
        ["conversation"] = typeof(Conversation),
        ["conversation_list"] = typeof(ConversationList),
        ["read_state"] = typeof(ReadState),
        ["user_presence"] = typeof(UserPresence),
        ["client_config"] = typeof(ClientConfig),
        ["sync_page"] = typeof(SyncPageWire),
    };

    /// <summary>REST bodies the client writes: only fields the server reads.</summary>
    private static readonly Dictionary<string, Type> Bodies = new()
    {
        ["create_conversation_request"] = typeof(CreateConversationRequest),
        ["send_message_request"] = typeof(SendMessageRequest),
        ["edit_message_request"] = typeof(EditMessageRequest),
        ["add_participants_request"] = typeof(AddParticipantsRequest),
        ["update_participant_request"] = typeof(UpdateParticipantRequest),
        ["typing_request"] = typeof(TypingRequest),
    };

    [Fact]
    public void FrameTypes_AreTheServersAndKnowEveryFrameItSends()
    {
        var known = SourceFacts.Constants<string>(typeof(FrameTypes)).Where(c => c.Name != nameof(FrameTypes.SubprotocolV1)).Select(c => c.Value).ToHashSet();
        var server = Names(Contract.GetProperty("server_frames"));
        var client = Names(Contract.GetProperty("client_frames"));

        Assert.Empty(known.Except(server).Except(client));
        Assert.Empty(server.Except(known));
        Assert.Equal(FrameTypes.SubprotocolV1, Contract.GetProperty("subprotocol").GetString());
    }

    [Fact]
    public void ServerFrames_AreReadByTheServersFieldNames()
    {
        foreach (var frame in Contract.GetProperty("server_frames").EnumerateObject())
        {
            var payload = ServerFrames.PayloadType(frame.Name);
            if (payload is null)
            {
                Assert.True(Ignored.Contains(frame.Name), $"The client does not read '{frame.Name}' frames.");
                continue;
            }

            var unknown = payload.Properties.Select(p => p.Name).Except(Strings(frame.Value)).ToList();
            Assert.True(unknown.Count == 0, $"The client reads {string.Join(", ", unknown)} of '{frame.Name}', which the server does not send.");
        }
    }

    [Fact]
    public void ClientFrames_CarryOnlyFieldsTheServerReads()
    {
        var conversationId = Guid.CreateVersion7();
        var send = new SendMessageRequest
        {
            ConversationId = conversationId,
            Content = "Hello",
            ReplyToId = Guid.CreateVersion7(),
            Mentions = [new Mention("bob", 0, 5)],
            Media = new Media { Url = "https://example.com/a.png", MimeType = "image/png", SizeBytes = 10, Width = 1, Height = 1, DurationMs = 5, FileName = "a.png", ThumbnailUrl = "https://example.com/t.png" },
            Location = new Location(1, 2, "here"),
            ClientMessageId = "k-1",
        };
        byte[][] frames =
        [
            ClientFrames.Ack(conversationId, 3),
            ClientFrames.SendMessage(send, "frame-1"),
            ClientFrames.Typing(conversationId, true),
            ClientFrames.ReadReceipt(Guid.CreateVersion7()),
        ];

        foreach (var bytes in frames)
        {
            var frame = JsonDocument.Parse(Encoding.UTF8.GetString(bytes)).RootElement;
            var type = frame.GetProperty("type").GetString()!;
            Assert.True(Contract.GetProperty("client_frames").TryGetProperty(type, out var fields), $"The server reads no '{type}' frames.");
            var sent = frame.GetProperty("payload").EnumerateObject().Select(p => p.Name);
            Assert.Empty(sent.Except(Strings(fields)));
        }
    }

    [Fact]
    public void ErrorCodes_AreExactlyTheServers()
    {
        var client = SourceFacts.Constants<string>(typeof(ParleyErrorCodes)).Select(c => c.Value).Order(StringComparer.Ordinal);

        Assert.Equal(Strings(Contract.GetProperty("error_codes")).Order(StringComparer.Ordinal), client);
    }

    [Fact]
    public void CloseCodes_HaveTheServersNumbers()
    {
        var server = Contract.GetProperty("close_codes").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());

        foreach (var (name, value) in SourceFacts.Constants<int>(typeof(CloseCodes)))
        {
            Assert.Equal(server[JsonNamingPolicy.SnakeCaseLower.ConvertName(name)], value);
        }
    }

    [Fact]
    public void RestAnswers_HaveEveryFieldTheServerWrites()
    {
        var objects = Contract.GetProperty("objects");
        foreach (var (name, type) in Answers)
        {
            Assert.Equal(Strings(objects.GetProperty(name)).Order(StringComparer.Ordinal), Fields(type).Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public void RestBodies_CarryOnlyFieldsTheServerReads()
    {
        var objects = Contract.GetProperty("objects");
        foreach (var (name, type) in Bodies)
        {
            Assert.Empty(Fields(type).Except(Strings(objects.GetProperty(name))));
        }
    }

    private static IEnumerable<string> Fields(Type type) => WireJson.Default.GetTypeInfo(type)!.Properties.Select(p => p.Name);

    private static HashSet<string> Names(JsonElement element) => [.. element.EnumerateObject().Select(p => p.Name)];

    private static IEnumerable<string> Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!);
}

using System.Text.Json;
using System.Text.Json.Nodes;
using Parley.Server.Protocol;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// docs/wire-contract.json, the machine-readable wire contract both clients are checked against (their own
/// WireContractTests), is what the server's types say: frame types and the fields of their payloads, error codes,
/// close codes, and the fields of REST objects and request bodies, in their JSON (snake_case) names. Run with
/// PARLEY_UPDATE_WIRE_CONTRACT=1 to rewrite the file after a deliberate change of the protocol.
/// </summary>
[Trait("Store", "Independent")]
public sealed class WireContractTests
{
    /// <summary>Every frame the server sends, and the type of its payload.</summary>
    private static readonly Dictionary<string, Type> ServerFrames = new()
    {
        [FrameTypes.Connected] = typeof(ConnectedPayload),
        [FrameTypes.ConversationCreated] = typeof(ConversationCreatedPayload),
        [FrameTypes.NewMessage] = typeof(NewMessagePayload),
        [FrameTypes.MessageEdited] = typeof(MessageEditedPayload),
        [FrameTypes.MessageDeleted] = typeof(MessageDeletedPayload),
        [FrameTypes.MessageDelivered] = typeof(ReceiptPayload),
        [FrameTypes.MessageRead] = typeof(ReceiptPayload),
        [FrameTypes.Typing] = typeof(TypingPayload),
        [FrameTypes.Presence] = typeof(PresencePayload),
        [FrameTypes.ParticipantAdded] = typeof(ParticipantAddedPayload),
        [FrameTypes.ParticipantRemoved] = typeof(ParticipantRemovedPayload),
        [FrameTypes.ParticipantUpdated] = typeof(ParticipantUpdatedPayload),
        [FrameTypes.HiddenEvent] = typeof(HiddenEventPayload),
        [FrameTypes.SyncComplete] = typeof(CursorPayload),
        [FrameTypes.SyncReset] = typeof(SyncResetPayload),
        [FrameTypes.Cursor] = typeof(CursorPayload),
        [FrameTypes.MessageAck] = typeof(MessageAckPayload),
        [FrameTypes.Pong] = typeof(PongPayload),
        [FrameTypes.Error] = typeof(ErrorPayload),
    };

    /// <summary>Every frame the server reads, and the type it reads the payload into (null: the payload is not read).</summary>
    private static readonly Dictionary<string, Type?> ClientFrames = new()
    {
        [FrameTypes.ReadReceipt] = typeof(ReadReceiptFrame),
        [FrameTypes.Typing] = typeof(TypingFrame),
        [FrameTypes.Ping] = null,
        [FrameTypes.Ack] = typeof(AckFrame),
        [FrameTypes.Resume] = typeof(ResumeFrame),
        [FrameTypes.SendMessage] = typeof(SendMessageRequest),
    };

    /// <summary>REST objects and request bodies, by the name the contract gives them.</summary>
    private static readonly Dictionary<string, Type> Objects = new()
    {
        ["message"] = typeof(Storage.Message),
        ["mention"] = typeof(Storage.Mention),
        ["media"] = typeof(Storage.Media),
        ["location"] = typeof(Storage.Location),
        ["message_version"] = typeof(Storage.MessageVersion),
        ["message_edits"] = typeof(MessageEdits),
        ["message_page"] = typeof(MessagePage),
        ["participant"] = typeof(Participant),
        ["conversation"] = typeof(Conversation),
        ["conversation_list"] = typeof(ConversationList),
        ["read_state"] = typeof(ReadState),
        ["user_presence"] = typeof(UserPresenceView),
        ["client_config"] = typeof(ClientConfig),
        ["sync_page"] = typeof(SyncPage),
        ["create_conversation_request"] = typeof(CreateConversationRequest),
        ["send_message_request"] = typeof(SendMessageRequest),
        ["edit_message_request"] = typeof(EditMessageRequest),
        ["add_participants_request"] = typeof(AddParticipantsRequest),
        ["update_participant_request"] = typeof(UpdateParticipantRequest),
        ["typing_request"] = typeof(TypingRequest),
    };

    /// <summary>FrameTypes constants that are not frames.</summary>
    private static readonly string[] NotFrames = [nameof(FrameTypes.SubprotocolV1), nameof(FrameTypes.WebSocketPath)];

    public static string ContractPath => Path.Combine(SourceFacts.RepositoryRoot(), "docs", "wire-contract.json");

    [Fact]
    public void Contract_EveryFrameTypeConstant_HasADirectionAndAPayload()
    {
        var frames = SourceFacts.Constants<string>(typeof(FrameTypes)).Where(c => !NotFrames.Contains(c.Name)).Select(c => c.Value).ToHashSet();

        Assert.Empty(frames.Except(ServerFrames.Keys).Except(ClientFrames.Keys));
        Assert.Empty(ServerFrames.Keys.Concat(ClientFrames.Keys).Except(frames));
    }

    [Fact]
    public void ContractFile_IsWhatTheServersTypesSay()
    {
        var expected = Build().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
        if (Environment.GetEnvironmentVariable("PARLEY_UPDATE_WIRE_CONTRACT") == "1")
        {
            File.WriteAllText(ContractPath, expected);
        }

        var actual = File.Exists(ContractPath) ? File.ReadAllText(ContractPath).ReplaceLineEndings("\n") : "(missing)";
        Assert.True(
            expected == actual,
            "docs/wire-contract.json differs from the server's types. If the protocol changed on purpose, run this test with "
            + "PARLEY_UPDATE_WIRE_CONTRACT=1, review the diff, and update both clients (their WireContractTests say where).\n" + expected);
    }

    [Fact]
    public void Contract_SendMessageFrame_CarriesTheRestBodysFields()
    {
        var contract = Build();

        Assert.Equal(
            contract["objects"]!["send_message_request"]!.AsArray().Select(n => n!.GetValue<string>()),
            contract["client_frames"]![FrameTypes.SendMessage]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    /// <summary>The contract, from the server's types: names as its JSON context writes and reads them.</summary>
    private static JsonObject Build()
    {
        var serverFrames = new JsonObject();
        foreach (var (type, payload) in ServerFrames.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            serverFrames[type] = Fields(payload);
        }

        var clientFrames = new JsonObject();
        foreach (var (type, payload) in ClientFrames.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            clientFrames[type] = payload is null ? new JsonArray() : Fields(payload);
        }

        var objects = new JsonObject();
        foreach (var (name, type) in Objects.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            objects[name] = Fields(type);
        }

        var closeCodes = new JsonObject();
        foreach (var (name, value) in SourceFacts.Constants<int>(typeof(CloseCodes)).OrderBy(c => c.Value))
        {
            closeCodes[JsonNamingPolicy.SnakeCaseLower.ConvertName(name)] = value;
        }

        return new JsonObject
        {
            ["description"] = "The Parley wire contract: frame types with the fields of their payloads, error codes, close codes and "
                + "the fields of REST objects, as JSON names. Generated from the types of the server by WireContractTests "
                + "(tests/Parley.Server.Tests); the .NET and TypeScript clients are checked against it.",
            ["subprotocol"] = FrameTypes.SubprotocolV1,
            ["server_frames"] = serverFrames,
            ["client_frames"] = clientFrames,
            ["error_codes"] = new JsonArray([.. SourceFacts.Constants<string>(typeof(ErrorCodes)).Select(c => JsonValue.Create(c.Value)).OrderBy(v => v.GetValue<string>(), StringComparer.Ordinal)]),
            ["close_codes"] = closeCodes,
            ["objects"] = objects,
        };
    }

    private static JsonArray Fields(Type type) =>
        new([.. ParleyJsonContext.Default.GetTypeInfo(type)!.Properties.Select(p => JsonValue.Create(p.Name))]);
}

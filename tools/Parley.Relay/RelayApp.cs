using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;

namespace Parley.Relay;

/// <summary>
/// The yardstick for Parley's CPU per message (docs/benchmarks.md): a Kestrel WebSocket relay that speaks as much of
/// Parley's protocol as <c>Parley.Bench chat</c> and <c>group</c> use, and writes the same frames for each message
/// (<c>message_ack</c> to the sending socket, <c>new_message</c> to every member's sockets, the sender's included,
/// <c>message_delivered</c> to the sender in a direct conversation), with nothing else: no storage, no cursors, no
/// receipts kept, no rate limits, header identity only. Everything it knows lives in memory and is gone when it stops.
/// Not a server to run for users.
/// </summary>
public static class RelayApp
{
    /// <summary>The relay on the usual host (urls from <c>--urls</c>), logging warnings only.</summary>
    public static WebApplication Create(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton<RelayState>();
        var app = builder.Build();
        app.UseWebSockets();
        app.MapGet("/health", () => "Healthy");
        app.MapPost("/api/v1/conversations", CreateConversationAsync);
        app.Map("/ws", AcceptAsync);
        return app;
    }

    // POST /api/v1/conversations {type, participant_ids, name}: the caller and the others, a new id, seq 0.
    private static async Task CreateConversationAsync(HttpContext context, RelayState state)
    {
        if (UserOf(context) is not { } caller)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }

        using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        var type = body.RootElement.TryGetProperty("type", out var t) ? t.GetString() ?? "direct" : "direct";
        string[] members = [caller, .. body.RootElement.TryGetProperty("participant_ids", out var ids)
            ? ids.EnumerateArray().Select(i => i.GetString() ?? "").Where(i => i.Length > 0 && i != caller)
            : []];
        var conversation = state.Create(type, members);
        var json = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            writer.WriteString("id"u8, conversation.Id);
            writer.WriteString("type"u8, type);
            writer.WriteString("created_by"u8, caller);
            writer.WriteNumber("last_seq"u8, 0);
            writer.WriteEndObject();
        }

        context.Response.StatusCode = StatusCodes.Status201Created;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(json.WrittenMemory, context.RequestAborted);
    }

    private static async Task AcceptAsync(HttpContext context, RelayState state)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        if (UserOf(context) is not { } user)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var connection = new RelaySocket(socket, user);
        state.Add(connection);
        try
        {
            await connection.RunAsync(state, context.RequestAborted);
        }
        finally
        {
            state.Remove(connection);
        }
    }

    private static string? UserOf(HttpContext context) =>
        context.Request.Headers["X-User-ID"].ToString() is { Length: > 0 } user ? user : null;
}

/// <summary>A conversation: its members and its seq counter (taken, and its frames queued, under its lock).</summary>
internal sealed class RelayConversation(Guid id, string type, string[] members)
{
    public Guid Id { get; } = id;

    public string Type { get; } = type;

    public string[] Members { get; } = members;

    public long Seq { get; set; }

    public Lock Gate { get; } = new();
}

/// <summary>Conversations and each user's open sockets, in memory.</summary>
internal sealed class RelayState
{
    private readonly ConcurrentDictionary<Guid, RelayConversation> _conversations = new();
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<RelaySocket, byte>> _sockets = new(StringComparer.Ordinal);

    public RelayConversation Create(string type, string[] members)
    {
        var conversation = new RelayConversation(Guid.CreateVersion7(), type, members);
        _conversations[conversation.Id] = conversation;
        return conversation;
    }

    public RelayConversation? Find(Guid id) => _conversations.GetValueOrDefault(id);

    public void Add(RelaySocket socket) => _sockets.GetOrAdd(socket.User, _ => new()).TryAdd(socket, 0);

    public void Remove(RelaySocket socket)
    {
        if (_sockets.TryGetValue(socket.User, out var sockets))
        {
            sockets.TryRemove(socket, out _);
        }
    }

    public IEnumerable<RelaySocket> SocketsOf(string user) =>
        _sockets.TryGetValue(user, out var sockets) ? sockets.Keys : [];
}

/// <summary>One socket: a receive loop that answers frames, and a send loop that drains an unbounded queue.</summary>
internal sealed class RelaySocket(WebSocket socket, string user)
{
    private readonly Channel<byte[]> _outbound = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });

    public string User { get; } = user;

    public void Enqueue(byte[] frame) => _outbound.Writer.TryWrite(frame);

    public async Task RunAsync(RelayState state, CancellationToken cancellationToken)
    {
        var send = SendLoopAsync(cancellationToken);
        Enqueue(Frame("connected", w =>
        {
            w.WriteString("connection_id"u8, Guid.NewGuid());
            w.WriteString("user_id"u8, User);
            w.WriteNumber("heartbeat_interval_ms"u8, 25_000);
            w.WriteBoolean("acks"u8, false);
            w.WriteString("cursor"u8, "");
        }));
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                (buffer, var filled, var type) = await Parley.Tools.WebSocketMessages.ReceiveAsync(socket, buffer, cancellationToken);
                if (type == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cancellationToken);
                    break;
                }

                Handle(state, buffer.AsSpan(0, filled));
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
        {
            // The client went away: nothing to keep.
        }
        finally
        {
            _outbound.Writer.TryComplete();
            await send;
        }
    }

    private void Handle(RelayState state, ReadOnlySpan<byte> json)
    {
        JsonDocument frame;
        try
        {
            frame = JsonDocument.Parse(json.ToArray());
        }
        catch (JsonException)
        {
            Enqueue(Error("invalid_frame", null));
            return;
        }

        using (frame)
        {
            var type = frame.RootElement.TryGetProperty("type", out var t) ? t.GetString() : null;
            switch (type)
            {
                case "ping":
                    Enqueue(Frame("pong", w => w.WriteString("timestamp"u8, DateTimeOffset.UtcNow)));
                    break;
                case "send_message" when frame.RootElement.TryGetProperty("payload", out var payload):
                    Send(state, payload);
                    break;
                default:
                    break;
            }
        }
    }

    private void Send(RelayState state, JsonElement payload)
    {
        var clientMessageId = payload.TryGetProperty("client_message_id", out var k) ? k.GetString() : null;
        if (!payload.TryGetProperty("conversation_id", out var c) || !c.TryGetGuid(out var conversationId)
            || state.Find(conversationId) is not { } conversation || !conversation.Members.Contains(User))
        {
            Enqueue(Error("not_found", clientMessageId));
            return;
        }

        var content = payload.TryGetProperty("content", out var text) ? text.GetString() : null;
        var messageType = payload.TryGetProperty("message_type", out var mt) ? mt.GetString() ?? "text" : "text";
        lock (conversation.Gate)
        {
            var seq = ++conversation.Seq;
            var id = Guid.CreateVersion7();
            var now = DateTimeOffset.UtcNow;
            void Message(Utf8JsonWriter w)
            {
                w.WriteStartObject("message"u8);
                w.WriteString("id"u8, id);
                w.WriteString("conversation_id"u8, conversationId);
                w.WriteNumber("seq"u8, seq);
                w.WriteString("sender_id"u8, User);
                w.WriteString("message_type"u8, messageType);
                w.WriteString("content"u8, content);
                w.WriteString("client_message_id"u8, clientMessageId);
                w.WriteString("created_at"u8, now);
                w.WriteEndObject();
            }

            Enqueue(Frame("message_ack", w =>
            {
                w.WriteString("client_message_id"u8, clientMessageId);
                Message(w);
            }));
            var created = Frame("new_message", w =>
            {
                Message(w);
                w.WriteString("timestamp"u8, now);
            });
            foreach (var member in conversation.Members)
            {
                foreach (var socket in state.SocketsOf(member))
                {
                    socket.Enqueue(created);
                }
            }

            if (conversation.Members is [_, _] && conversation.Members.FirstOrDefault(m => m != User) is { } recipient)
            {
                var delivered = Frame("message_delivered", w =>
                {
                    w.WriteString("conversation_id"u8, conversationId);
                    w.WriteString("user_id"u8, recipient);
                    w.WriteString("message_id"u8, id);
                    w.WriteNumber("up_to_seq"u8, seq);
                    w.WriteString("timestamp"u8, now);
                });
                foreach (var socket in state.SocketsOf(User))
                {
                    socket.Enqueue(delivered);
                }
            }
        }
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var frame in _outbound.Reader.ReadAllAsync(cancellationToken))
            {
                await socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
        {
            // The socket is gone; the receive loop ends too.
        }
    }

    private static byte[] Error(string code, string? clientMessageId) =>
        Frame("error", w =>
        {
            w.WriteString("code"u8, code);
            w.WriteString("message"u8, code);
            w.WriteString("client_message_id"u8, clientMessageId);
        });

    private static byte[] Frame(string type, Action<Utf8JsonWriter> payload)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, type);
            writer.WriteStartObject("payload"u8);
            payload(writer);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}

using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using System.Web;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Client.Tests.Infrastructure;

/// <summary>
/// A scripted Parley for unit tests of <see cref="ParleyRealtime"/>: sockets are real WebSocket implementations
/// over in-memory pipes (close codes, aborts and framing behave as on a network), REST answers come from
/// <see cref="Http"/>. Tests accept each connection attempt and play the server's side frame by frame.
/// </summary>
internal sealed class FakeParley : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly Channel<FakeSocket> _accepted = Channel.CreateUnbounded<FakeSocket>();
    private readonly ConcurrentQueue<Exception> _refusals = new();
    private readonly ConcurrentQueue<FakeSocket> _sockets = new();
    private int _tokens;

    public static Uri BaseAddress { get; } = new("http://parley.test/");

    /// <summary>How many tokens the credentials' provider handed out.</summary>
    public int TokensIssued => Volatile.Read(ref _tokens);

    /// <summary>Answers REST requests; 404 when null.</summary>
    public Func<HttpRequestMessage, HttpResponseMessage>? Http { get; set; }

    public ConcurrentQueue<string> HttpRequests { get; } = new();

    public ParleyClient CreateClient() =>
        new(BaseAddress, ParleyCredentials.Bearer(_ => ValueTask.FromResult("token-" + Interlocked.Increment(ref _tokens))), new HttpClient(new Handler(this)));

    public ParleyRealtimeOptions Options(ICursorStore? store = null) => new()
    {
        Connector = ConnectAsync,
        CursorStore = store ?? new InMemoryCursorStore(),
        InitialReconnectDelay = TimeSpan.FromMilliseconds(20),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(200),
        AckDelay = TimeSpan.FromMilliseconds(20),
        SendRetryDelay = TimeSpan.FromMilliseconds(50),
        DeviceId = "phone",
    };

    /// <summary>The next connection attempt fails with <paramref name="error"/> (as ClientWebSocket would report it).</summary>
    public void RefuseNext(Exception error) => _refusals.Enqueue(error);

    /// <summary>The next connection attempt is never answered (an upgrade accepted at the TCP level and left hanging).</summary>
    public void HangNext() => _refusals.Enqueue(new HangException());

    private sealed class HangException : Exception;

    public async Task<FakeSocket> AcceptAsync() =>
        await _accepted.Reader.ReadAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Timeout, TestContext.Current.CancellationToken);

    /// <summary>Accepts the next connection and sends <c>connected</c> (with a cursor, as a server that knows cursors does).</summary>
    public async Task<FakeSocket> AcceptConnectedAsync(string userId = "alice", string? cursor = "cursor-0")
    {
        var socket = await AcceptAsync();
        await socket.SendConnectedAsync(userId, cursor);
        return socket;
    }

    /// <summary>Asserts that the client makes no further connection attempt within <paramref name="within"/>.</summary>
    public async Task AssertNoConnectionAsync(TimeSpan within)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(within);
        try
        {
            var socket = await _accepted.Reader.ReadAsync(cts.Token);
            Assert.Fail($"Unexpected connection attempt to {socket.Request.Uri}");
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
            // Expected: no attempt.
        }
    }

    private Task<WebSocket> ConnectAsync(WebSocketConnectRequest request, CancellationToken cancellationToken)
    {
        if (_refusals.TryDequeue(out var refusal))
        {
            return refusal is HangException ? HangAsync(cancellationToken) : Task.FromException<WebSocket>(refusal);
        }

        var (client, socket) = CreatePair(request);
        _sockets.Enqueue(socket);
        _accepted.Writer.TryWrite(socket);
        return Task.FromResult(client);
    }

    private static async Task<WebSocket> HangAsync(CancellationToken cancellationToken)
    {
        await Task.Delay(System.Threading.Timeout.Infinite, cancellationToken);
        throw new InvalidOperationException("unreachable");
    }

    /// <summary>A client WebSocket and the fake server's side of it, over in-memory pipes (for tests of one socket's pieces).</summary>
    public static (WebSocket Client, FakeSocket Server) CreatePair(WebSocketConnectRequest? request = null)
    {
        var toServer = new Pipe();
        var toClient = new Pipe();
        var client = WebSocket.CreateFromStream(new DuplexPipeStream(toClient.Reader, toServer.Writer), new WebSocketCreationOptions { IsServer = false });
        var server = WebSocket.CreateFromStream(new DuplexPipeStream(toServer.Reader, toClient.Writer), new WebSocketCreationOptions { IsServer = true });
        return (client, new FakeSocket(request ?? new WebSocketConnectRequest(new Uri(BaseAddress, "ws"), []), server));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var socket in _sockets)
        {
            await socket.DisposeAsync();
        }
    }

    private sealed class Handler(FakeParley owner) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            owner.HttpRequests.Enqueue(request.RequestUri!.PathAndQuery);
            var response = owner.Http?.Invoke(request) ?? Problem(HttpStatusCode.NotFound, "not_found");
            response.RequestMessage = request;
            return Task.FromResult(response);
        }
    }

    public static HttpResponseMessage Json(string json, HttpStatusCode status = HttpStatusCode.OK) =>
        new(status) { Content = new StringContent(json, Encoding.UTF8, "application/json") };

    public static HttpResponseMessage Problem(HttpStatusCode status, string code) =>
        new(status)
        {
            Content = new StringContent(
                $$"""{"status": {{(int)status}}, "title": "x", "detail": "{{code}} detail", "code": "{{code}}"}""", Encoding.UTF8, "application/problem+json"),
        };

    /// <summary>A Stream over two pipes, one per direction.</summary>
    private sealed class DuplexPipeStream(PipeReader reader, PipeWriter writer) : Stream
    {
        private readonly Stream _input = reader.AsStream();
        private readonly Stream _output = writer.AsStream();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _input.ReadAsync(buffer, cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _output.WriteAsync(buffer, cancellationToken);
            await _output.FlushAsync(cancellationToken);
        }

        public override int Read(byte[] buffer, int offset, int count) => _input.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count)
        {
            _output.Write(buffer, offset, count);
            _output.Flush();
        }

        public override void Flush() => _output.Flush();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                reader.Complete();
                writer.Complete();
            }

            base.Dispose(disposing);
        }
    }
}

/// <summary>The server's side of one fake connection: collects every client frame; tests wait for the next one of a type.</summary>
internal sealed class FakeSocket : IAsyncDisposable
{
    private readonly FrameInbox _inbox = new("the fake server", FakeParley.Timeout);
    private readonly Task _receiveLoop;

    public FakeSocket(WebSocketConnectRequest request, WebSocket server)
    {
        Request = request;
        Server = server;
        _receiveLoop = _inbox.ReceiveAsync(server, answerClose: true);
    }

    public WebSocketConnectRequest Request { get; }

    public WebSocket Server { get; }

    /// <summary>The close status the client sent (null when the socket was aborted).</summary>
    public Task<WebSocketCloseStatus?> Closed => _inbox.Closed;

    public string? Query(string name) => HttpUtility.ParseQueryString(Request.Uri.Query)[name];

    public string? Header(string name) => Request.Headers.FirstOrDefault(h => h.Key == name).Value;

    public IReadOnlyList<JsonElement> Frames => _inbox.All();

    public Task SendConnectedAsync(string userId = "alice", string? cursor = "cursor-0") =>
        SendAsync("connected", new { ConnectionId = Guid.NewGuid().ToString("N"), UserId = userId, DeviceId = "phone", HeartbeatIntervalMs = 25000, Acks = true, Cursor = cursor });

    public Task SendAsync(string type, object payload) =>
        SendRawAsync(JsonSerializer.Serialize(new { type, payload }, Wire.Options));

    public Task SendRawAsync(string json) =>
        Server.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, TestContext.Current.CancellationToken).WaitAsync(FakeParley.Timeout);

    public Task CloseAsync(int status, string reason = "") =>
        Server.CloseOutputAsync((WebSocketCloseStatus)status, reason, TestContext.Current.CancellationToken).WaitAsync(FakeParley.Timeout);

    /// <summary>Ends the connection without a close frame (a network loss).</summary>
    public void Drop() => Server.Abort();

    /// <summary>The payload of the next unconsumed frame of <paramref name="type"/> that matches.</summary>
    public Task<JsonElement> NextAsync(string type, Func<JsonElement, bool>? match = null, TimeSpan? timeout = null) =>
        _inbox.NextAsync(type, match, timeout);

    public Task AssertNoFrameAsync(string type, TimeSpan within, Func<JsonElement, bool>? match = null) =>
        _inbox.AssertNoFrameAsync(type, within, match);

    public async ValueTask DisposeAsync()
    {
        Server.Abort();
        await _receiveLoop;
        Server.Dispose();
        _inbox.Dispose();
    }
}

/// <summary>Server frames as the real server writes them (snake_case), built from anonymous objects.</summary>
internal static class Wire
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static readonly DateTimeOffset Now = DateTimeOffset.Parse("2026-11-24T01:49:40.770Z", System.Globalization.CultureInfo.InvariantCulture);

    public static object Message(Guid conversationId, long seq, string sender = "bob", string? clientMessageId = null, string content = "hi") => new
    {
        Id = Guid.CreateVersion7(),
        ConversationId = conversationId,
        Seq = seq,
        SenderId = sender,
        MessageType = "text",
        Content = content,
        ClientMessageId = clientMessageId,
        CreatedAt = Now,
    };

    public static object NewMessage(Guid conversationId, long seq, string sender = "bob", string? clientMessageId = null) =>
        new { Message = Message(conversationId, seq, sender, clientMessageId, $"message {seq}"), Timestamp = Now };

    public static object Hidden(Guid conversationId, long seq) => new { ConversationId = conversationId, Seq = seq };

    public static object ParticipantAdded(Guid conversationId, long seq, string userId) =>
        new { ConversationId = conversationId, Seq = seq, UserId = userId, Role = "member", AddedBy = "bob", Timestamp = Now };

    public static object ParticipantRemoved(Guid conversationId, long seq, string userId) =>
        new { ConversationId = conversationId, Seq = seq, UserId = userId, RemovedBy = "bob", Timestamp = Now };

    public static object Receipt(Guid conversationId, string userId, long upToSeq) =>
        new { ConversationId = conversationId, UserId = userId, MessageId = Guid.CreateVersion7(), UpToSeq = upToSeq, Timestamp = Now };

    public static object Cursor(string cursor) => new { Cursor = cursor };

    /// <summary>A <c>GET /api/v1/sync</c> body.</summary>
    public static string SyncPage(string nextCursor, bool hasMore, params (string Type, object Payload)[] events) =>
        JsonSerializer.Serialize(new { Events = events.Select(e => new { type = e.Type, payload = e.Payload }), NextCursor = nextCursor, HasMore = hasMore }, Options);
}

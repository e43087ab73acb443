// A console chat: talks to a Parley server as one user, prints incoming events, sends each line typed.
// Usage: PARLEY_URL=http://localhost:8083 PARLEY_TOKEN=$(...) dotnet run --project samples/Parley.Client.Sample -- <other-user-id>
using Parley.Client;

var server = new Uri(Environment.GetEnvironmentVariable("PARLEY_URL") ?? "http://localhost:8083");
var token = Environment.GetEnvironmentVariable("PARLEY_TOKEN") ?? throw new InvalidOperationException("Set PARLEY_TOKEN.");
var otherUser = args.Length > 0 ? args[0] : "bob";

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };

// REST: credentials are asked for on every request; a real app returns a cached, refreshed token here.
using var client = new ParleyClient(server, ParleyCredentials.Bearer(_ => ValueTask.FromResult(token)));

// Realtime: the cursor file lets the next run resume exactly where this one stopped.
await using var realtime = new ParleyRealtime(client, new ParleyRealtimeOptions
{
    DeviceId = "console",
    CursorStore = new FileCursorStore(Path.Combine(AppContext.BaseDirectory, "parley-cursor.json")),
});
await realtime.ConnectAsync(stop.Token);
Console.WriteLine($"Connected as {realtime.UserId}.");

var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(otherUser), stop.Token);
var hello = await realtime.SendAsync(SendMessageRequest.Text(conversation.Id, "Hello from the console!"), stop.Token);
Console.WriteLine($"Sent message {hello.Id} (seq {hello.Seq}) to {otherUser}. Type lines to send more; Ctrl+C quits.");

var printing = PrintEventsAsync(realtime, stop.Token);
var typing = SendLinesAsync(realtime, conversation.Id, stop.Token);
await Task.WhenAny(printing, typing);
await stop.CancelAsync();
await Task.WhenAll(printing, typing);

static async Task PrintEventsAsync(ParleyRealtime realtime, CancellationToken cancellationToken)
{
    try
    {
        // Each conversation's events arrive once and in order; an event is acknowledged (and covered by the
        // saved cursor) once this loop asks for the next one.
        await foreach (var e in realtime.ReadEventsAsync(cancellationToken))
        {
            Console.WriteLine(e switch
            {
                MessageCreatedEvent m => $"[{m.Message.SenderId}] {m.Message.Content}",
                MessageEditedEvent m => $"[{m.Message.SenderId}] (edited) {m.Message.Content}",
                MessageDeletedEvent m => $"(message {m.MessageId} deleted)",
                MessageReadEvent r => $"({r.UserId} read up to {r.UpToSeq})",
                MessageDeliveredEvent d => $"({d.UserId} received up to {d.UpToSeq})",
                TypingEvent t => t.IsTyping ? $"({t.UserId} is typing...)" : $"({t.UserId} stopped typing)",
                SyncResetEvent => "(missed too much while away: reload conversations over REST)",
                ConversationEvent other => $"({other.GetType().Name} at seq {other.Seq})",
                _ => $"({e.GetType().Name})",
            });
        }
    }
    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
    {
        // Ctrl+C.
    }
}

static async Task SendLinesAsync(ParleyRealtime realtime, Guid conversationId, CancellationToken cancellationToken)
{
    try
    {
        while (await Console.In.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length > 0)
            {
                // Sent over the socket and resent with the same client_message_id until acknowledged.
                await realtime.SendAsync(SendMessageRequest.Text(conversationId, line), cancellationToken);
            }
        }
    }
    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
    {
        // Ctrl+C.
    }
}

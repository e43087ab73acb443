using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Client;

/// <summary>
/// Sends messages with <c>POST /api/v1/messages</c> from a fixed pool of workers, each with one request in flight
/// and its own reused body buffer. The scheduler only queues (sender, message); when every worker is busy the
/// queue grows and the wait shows in the latency, as it would for a real client pool.
/// </summary>
internal sealed class RestSender
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly HttpClient _http;
    private readonly MessageLedger _ledger;
    private readonly byte[] _content;
    private readonly int _workers;
    private readonly Channel<Item> _queue = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleWriter = true });

    public RestSender(HttpClient http, MessageLedger ledger, byte[] content, int workers)
    {
        _http = http;
        _ledger = ledger;
        _content = content;
        _workers = workers;
    }

    public void Enqueue(Identity sender, Guid conversationId, long index) => _queue.Writer.TryWrite(new Item(sender, conversationId, index));

    /// <summary>No more sends: the workers finish what is queued and end.</summary>
    public void Complete() => _queue.Writer.TryComplete();

    public Task RunAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(Enumerable.Range(0, _workers).Select(_ => WorkAsync(cancellationToken)));

    private async Task WorkAsync(CancellationToken cancellationToken)
    {
        using var frames = new ClientFrames();
        try
        {
            await foreach (var item in _queue.Reader.ReadAllAsync(cancellationToken))
            {
                await SendAsync(frames, item, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The run is over; what was still queued stays unanswered.
        }
    }

    private async Task SendAsync(ClientFrames frames, Item item, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, item.Sender.MessagesUri)
        {
            Content = new ReadOnlyMemoryContent(frames.MessageBody(item.ConversationId, item.Index, _content)),
        };
        request.Content.Headers.ContentType = Json;
        item.Sender.Apply(request.Headers);
        _ledger.OnSent(item.Index, Stopwatch.GetTimestamp());
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            if (response.IsSuccessStatusCode)
            {
                _ledger.OnAck(item.Index, Stopwatch.GetTimestamp());
                return;
            }

            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            _ledger.OnError(ProblemCode(body) ?? "http_" + (int)response.StatusCode, item.Index);
        }
        catch (HttpRequestException)
        {
            _ledger.OnError("http_failed", item.Index);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            _ledger.OnError("http_timeout", item.Index);
        }
    }

    /// <summary>The <c>code</c> of a ProblemDetails body, or null.</summary>
    public static string? ProblemCode(ReadOnlySpan<byte> body)
    {
        try
        {
            var reader = new Utf8JsonReader(body);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isCode = reader.ValueTextEquals("code"u8);
                reader.Read();
                if (isCode && reader.TokenType == JsonTokenType.String)
                {
                    return reader.GetString();
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
            // Not JSON: the caller falls back to the status code.
        }

        return null;
    }

    private readonly record struct Item(Identity Sender, Guid ConversationId, long Index);
}

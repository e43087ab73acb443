using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>
/// One webhook endpoint as a sink: each record is POSTed on its own, one after another (the endpoint sees them in
/// stream order), signed with HMAC-SHA256 over "timestamp.body". A refused POST (an answer other than 2xx, redirects
/// included) is retried with exponential back-off; after <see cref="WebhookOptions.MaxAttempts"/> refusals the record
/// goes to <c>event_dead_letters</c> and delivery goes on, so one poisonous record cannot stop the endpoint forever.
/// An endpoint that cannot be reached at all (no connection: refused, unknown name, failed TLS) is down, not refusing the
/// record: after as many attempts the batch fails (the relay reports the sink failing and retries it with its own
/// back-off), and nothing is dead-lettered for an outage. A connection dropped or a timeout after the request went out
/// counts as a refusal: a record that crashes the endpoint must not block it forever. Records of a failed batch that
/// were already delivered or dead-lettered are not posted again when the relay retries it (in this process).
/// </summary>
internal sealed partial class WebhookSink(
    string endpoint, WebhookOptions options, HttpClient http, IChatStore store, TimeProvider time, ILogger<WebhookSink> logger) : IEventSink
{
    public const string SignatureHeader = "Parley-Signature";
    public const string EventIdHeader = "Parley-Event-Id";
    public const string EventTypeHeader = "Parley-Event-Type";

    private readonly byte[] _secret = Encoding.UTF8.GetBytes(options.Secret ?? "");

    // The records of the last batch that failed which are done (delivered or dead-lettered): the relay publishes the same
    // batch again from its recorded position, and these need not be posted twice. Cleared once a batch completes.
    private readonly HashSet<string> _done = new(StringComparer.Ordinal);

    public string Name => $"webhook:{endpoint}";

    public async Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
    {
        foreach (var record in records.Where(Wanted))
        {
            if (_done.Contains(record.EventId))
            {
                continue;
            }

            await DeliverAsync(record, cancellationToken);
            _done.Add(record.EventId);
        }

        _done.Clear();
    }

    private bool Wanted(EventRecord record) =>
        options.EventTypes.Count == 0 ? record.Topic == EventTopic.Events : options.EventTypes.Contains(record.Type, StringComparer.Ordinal);

    private async Task DeliverAsync(EventRecord record, CancellationToken cancellationToken)
    {
        var backoff = options.InitialBackoff;
        string? error = null;
        for (var attempt = 1; attempt <= options.MaxAttempts; attempt++)
        {
            (error, var answered) = await PostAsync(record, cancellationToken);
            if (error is null)
            {
                return;
            }

            Log.AttemptFailed(logger, endpoint, record.EventId, attempt, options.MaxAttempts, error);
            if (attempt == options.MaxAttempts && !answered)
            {
                throw new EventSinkException($"Webhook {endpoint} cannot be reached: {error}");
            }

            if (attempt < options.MaxAttempts)
            {
                await Task.Delay(backoff, time, cancellationToken);
                backoff = backoff * 2 < options.MaxBackoff ? backoff * 2 : options.MaxBackoff;
            }
        }

        Log.DeadLettered(logger, endpoint, record.EventId, record.Type);
        await store.AddDeadLetterAsync(
            new DeadLetter(Name, record.EventId, record.Type, Encoding.UTF8.GetString(record.Body), error ?? "", time.GetUtcNow()), cancellationToken);
    }

    /// <summary>One POST: no error on success, else why it failed and whether the endpoint was reached at all.</summary>
    private async Task<(string? Error, bool Answered)> PostAsync(EventRecord record, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, options.Url) { Content = new ByteArrayContent(record.Body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.Add(EventIdHeader, record.EventId);
        request.Headers.Add(EventTypeHeader, record.Type);
        request.Headers.Add(SignatureHeader, Sign(_secret, time.GetUtcNow().ToUnixTimeSeconds(), record.Body));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.Timeout);
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            return (response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode}", true);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return ($"no answer within {options.Timeout.TotalSeconds} s", true);
        }
        catch (HttpRequestException ex)
        {
            // Not connected at all: the endpoint is down. Anything later (the connection dropped mid-answer) was an answer.
            var connected = ex.HttpRequestError is not (HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError
                or HttpRequestError.SecureConnectionError or HttpRequestError.ProxyTunnelError);
            return (ex.Message, connected);
        }
    }

    /// <summary>
    /// <c>t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256 of "&lt;t&gt;.&lt;body&gt;"&gt;</c>: the receiver recomputes it and refuses a
    /// timestamp outside its replay window.
    /// </summary>
    public static string Sign(byte[] secret, long timestamp, ReadOnlySpan<byte> body)
    {
        var t = timestamp.ToString(CultureInfo.InvariantCulture);
        var signed = new byte[t.Length + 1 + body.Length];
        Encoding.ASCII.GetBytes(t, signed);
        signed[t.Length] = (byte)'.';
        body.CopyTo(signed.AsSpan(t.Length + 1));
        return $"t={t},v1={Convert.ToHexStringLower(HMACSHA256.HashData(secret, signed))}";
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7301, Level = LogLevel.Warning, Message = "Webhook {Endpoint}: record {EventId} attempt {Attempt} of {MaxAttempts} failed: {Reason}")]
        public static partial void AttemptFailed(ILogger logger, string endpoint, string eventId, int attempt, int maxAttempts, string reason);

        [LoggerMessage(EventId = 7302, Level = LogLevel.Error, Message = "Webhook {Endpoint}: record {EventId} ({Type}) dead-lettered after its last attempt")]
        public static partial void DeadLettered(ILogger logger, string endpoint, string eventId, string type);
    }
}

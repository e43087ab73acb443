using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>
/// One webhook endpoint as a sink: each record is POSTed on its own, one after another (the endpoint sees them in stream
/// order; with <see cref="WebhookOptions.Concurrency"/> above 1, those of one conversation in order), signed with
/// HMAC-SHA256 over "timestamp.body". A failed POST is retried with exponential back-off (or the endpoint's longer
/// <c>Retry-After</c>). A refused POST (an answer other than 2xx, redirects included, or a connection dropped after the
/// request went out: a record that crashes the endpoint must not block it forever) goes, after
/// <see cref="WebhookOptions.MaxAttempts"/> refusals (attempts that found the endpoint unavailable not counted), to
/// <c>event_dead_letters</c>, and delivery goes on, so one poisonous record cannot stop the endpoint forever. An endpoint
/// that is down, busy, unreachable or misconfigured (no connection, no answer within the timeout, or 401, 403, 404, 408,
/// 429, 502, 503, 504) says
/// nothing about the record: after as many such attempts the batch fails (the relay reports the sink failing and
/// retries it with its own back-off), and nothing is dead-lettered for an outage. Records of a failed batch that were
/// already delivered or dead-lettered are not posted again when the relay retries it (in this process).
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

    // The refusals each record of that batch has had: an outage that failed the batch must not wipe them, or a record
    // that crashes the endpoint (refused, then unavailable while the endpoint restarts) would never be dead-lettered.
    private readonly Dictionary<string, int> _refusals = new(StringComparer.Ordinal);
    private readonly Lock _doneLock = new();

    public string Name => $"webhook:{endpoint}";

    public bool WantsNotifications => options.EventTypes.Contains(RecordTypes.NotificationMessage, StringComparer.Ordinal);

    public async Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
    {
        var pending = records.Where(r => Wanted(r) && !_done.Contains(r.EventId)).ToList();
        if (options.Concurrency == 1)
        {
            await DeliverInOrderAsync(pending, new StrongBox<bool>(), cancellationToken);
        }
        else
        {
            // One lane per key, each in its order; lanes side by side. After a lane failed no lane starts a record, the
            // records under way finish (their attempts are not cut short, and what they delivered is done), and the batch
            // fails with that lane's reason. The lanes get the caller's token, not the loop's, which the loop cancels on
            // the first failure.
            var lanes = pending.GroupBy(r => r.Key, StringComparer.Ordinal).Select(g => g.ToList());
            var failed = new StrongBox<bool>();
            await Parallel.ForEachAsync(
                lanes, new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = cancellationToken },
                (lane, _) => new ValueTask(DeliverInOrderAsync(lane, failed, cancellationToken)));
        }

        _done.Clear();
        _refusals.Clear();
    }

    /// <summary>
    /// Delivers (or dead-letters) each record after the one before; a record that could not be stops the rest, and tells
    /// the other lanes (<paramref name="failed"/>) not to start another.
    /// </summary>
    private async Task DeliverInOrderAsync(List<EventRecord> records, StrongBox<bool> failed, CancellationToken cancellationToken)
    {
        foreach (var record in records)
        {
            if (Volatile.Read(ref failed.Value))
            {
                return;
            }

            try
            {
                await DeliverAsync(record, cancellationToken);
            }
            catch
            {
                Volatile.Write(ref failed.Value, true);
                throw;
            }

            lock (_doneLock)
            {
                _done.Add(record.EventId);
            }
        }
    }

    private bool Wanted(EventRecord record) =>
        options.EventTypes.Count == 0 ? record.Topic == EventTopic.Events : options.EventTypes.Contains(record.Type, StringComparer.Ordinal);

    /// <summary>
    /// Posts until delivered; dead-letters after <see cref="WebhookOptions.MaxAttempts"/> refusals, and fails the batch after
    /// as many attempts that found the endpoint unavailable: the two are counted apart, so an outage's failures never
    /// count towards a dead letter, nor a refusal towards an outage.
    /// </summary>
    private async Task DeliverAsync(EventRecord record, CancellationToken cancellationToken)
    {
        var backoff = options.InitialBackoff;
        int refusals;
        lock (_doneLock)
        {
            refusals = _refusals.GetValueOrDefault(record.EventId);
        }

        var outages = 0;
        Attempt last;
        while (true)
        {
            last = await PostAsync(record, cancellationToken);
            if (last.Result == PostResult.Delivered)
            {
                return;
            }

            int failures;
            if (last.Result == PostResult.Refused)
            {
                failures = ++refusals;
                lock (_doneLock)
                {
                    // Kept at once: however this attempt's batch ends (an outage, a lost lease, a stop), the next counts on.
                    _refusals[record.EventId] = refusals;
                }
            }
            else
            {
                failures = ++outages;
            }

            Log.AttemptFailed(logger, endpoint, record.EventId, refusals + outages, last.Result == PostResult.Refused ? "refused" : "unavailable", last.Error!);
            // At least, not exactly: a batch that failed after the last refusal (its dead letter not stored) comes again with
            // the count kept, and its next refusal is past the limit.
            if (failures >= options.MaxAttempts)
            {
                break;
            }

            // The endpoint's Retry-After (429, 503) when it asks for longer than the back-off, within the longest wait.
            var wait = last.RetryAfter is { } asked && asked > backoff ? (asked < options.MaxBackoff ? asked : options.MaxBackoff) : backoff;
            await Task.Delay(wait, time, cancellationToken);
            backoff = backoff * 2 < options.MaxBackoff ? backoff * 2 : options.MaxBackoff;
        }

        if (last.Result == PostResult.Unavailable)
        {
            throw new EventSinkException($"Webhook {endpoint} {(last.Answered ? "is unavailable" : "cannot be reached")}: {last.Error}");
        }

        Log.DeadLettered(logger, endpoint, record.EventId, record.Type);
        await store.AddDeadLetterAsync(
            new DeadLetter(Name, record.EventId, record.Type, Encoding.UTF8.GetString(record.Body), last.Error ?? "", time.GetUtcNow()), cancellationToken);
    }

    private enum PostResult
    {
        Delivered,

        /// <summary>The endpoint took the record and refused it (or dropped the connection on it): may be dead-lettered.</summary>
        Refused,

        /// <summary>The endpoint is down, busy or unreachable, which says nothing about the record: never dead-lettered.</summary>
        Unavailable,
    }

    /// <summary>What a POST came to: its result, the error if any, whether an HTTP answer came, and the wait the endpoint asked for.</summary>
    private readonly record struct Attempt(PostResult Result, string? Error, bool Answered, TimeSpan? RetryAfter);

    /// <summary>
    /// Answers that say the endpoint (or the proxy in front of it) cannot take requests now, whatever the record: request
    /// timeout, too many requests, bad gateway, unavailable, gateway timeout; and those that say the endpoint's address or
    /// credentials are wrong (unauthorized and forbidden: a secret changed on one side only; not found: a wrong URL), which
    /// would otherwise dead-letter every record one after another until someone fixed the configuration.
    /// </summary>
    private static bool IsUnavailable(HttpStatusCode status) => (int)status is 401 or 403 or 404 or 408 or 429 or 502 or 503 or 504;

    /// <summary>One POST, and what its outcome says about the record and the endpoint.</summary>
    private async Task<Attempt> PostAsync(EventRecord record, CancellationToken cancellationToken)
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
            if (response.IsSuccessStatusCode)
            {
                return new Attempt(PostResult.Delivered, null, true, null);
            }

            var error = $"HTTP {(int)response.StatusCode}";
            return IsUnavailable(response.StatusCode)
                ? new Attempt(PostResult.Unavailable, error, true, RetryAfter(response.Headers.RetryAfter))
                : new Attempt(PostResult.Refused, error, true, null);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // No answer in time: connecting may not even have finished (a host that is gone, a firewall that drops, a DNS
            // server that does not answer), or the endpoint is overloaded. Either way an outage, not a verdict on the record.
            return new Attempt(PostResult.Unavailable, $"no answer within {options.Timeout.TotalSeconds} s", false, null);
        }
        catch (HttpRequestException ex)
        {
            // Not connected at all: the endpoint is down. Anything later (the connection dropped mid-answer) was an answer.
            var connected = ex.HttpRequestError is not (HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError
                or HttpRequestError.SecureConnectionError or HttpRequestError.ProxyTunnelError);
            return new Attempt(connected ? PostResult.Refused : PostResult.Unavailable, ex.Message, false, null);
        }
    }

    private TimeSpan? RetryAfter(RetryConditionHeaderValue? header) => header switch
    {
        { Delta: { } delta } => delta > TimeSpan.Zero ? delta : TimeSpan.Zero,
        { Date: { } date } => date - time.GetUtcNow() is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
        _ => null,
    };

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
        [LoggerMessage(EventId = 7301, Level = LogLevel.Warning, Message = "Webhook {Endpoint}: record {EventId} attempt {Attempt} failed ({Kind}): {Reason}")]
        public static partial void AttemptFailed(ILogger logger, string endpoint, string eventId, int attempt, string kind, string reason);

        [LoggerMessage(EventId = 7302, Level = LogLevel.Error, Message = "Webhook {Endpoint}: record {EventId} ({Type}) dead-lettered after its last attempt")]
        public static partial void DeadLettered(ILogger logger, string endpoint, string eventId, string type);
    }
}

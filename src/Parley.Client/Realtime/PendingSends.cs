namespace Parley.Client.Realtime;

/// <summary>A message sent over the socket and not acknowledged yet; resent with the same frame (and client_message_id) until it is.</summary>
internal sealed class PendingSend(Guid conversationId, string clientMessageId, byte[] frame)
{
    public Guid ConversationId { get; } = conversationId;

    public string ClientMessageId { get; } = clientMessageId;

    /// <summary>
    /// What identifies the send: a client_message_id is the sender's per conversation (another device of the user may
    /// use the same one elsewhere). Also the frame's <c>id</c>, which the server echoes in an <c>error</c>.
    /// </summary>
    public string Key { get; } = KeyOf(conversationId, clientMessageId);

    public static string KeyOf(Guid conversationId, string clientMessageId) => $"{conversationId:N}:{clientMessageId}";

    public byte[] Frame { get; } = frame;

    public TaskCompletionSource<Message> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>When a send refused for a passing reason is due again; null when it waits for the next connection only.</summary>
    public DateTimeOffset? RetryAt { get; set; }

    /// <summary>How often the server answered <c>internal_error</c> so far.</summary>
    public int InternalErrors { get; set; }
}

/// <summary>Sends awaiting <c>message_ack</c>, in the order they were made. Not thread-safe: the owner's lock guards it.</summary>
internal sealed class PendingSends
{
    private readonly Dictionary<string, PendingSend> _byId = new(StringComparer.Ordinal);
    private readonly List<PendingSend> _order = [];

    public int Count => _order.Count;

    public IReadOnlyList<PendingSend> All => _order;

    public bool TryAdd(PendingSend send)
    {
        if (!_byId.TryAdd(send.Key, send))
        {
            return false;
        }

        _order.Add(send);
        return true;
    }

    /// <summary>
    /// The send named by an <c>error</c>: by the frame id it echoes (this client's frames all carry one); without one
    /// (a server that does not echo it), the first waiting with the client_message_id.
    /// </summary>
    public PendingSend? Find(string? frameId, string? clientMessageId) =>
        frameId is not null ? _byId.GetValueOrDefault(frameId)
        : clientMessageId is not null ? _order.Find(s => s.ClientMessageId == clientMessageId)
        : null;

    public void Remove(PendingSend send)
    {
        if (_byId.TryGetValue(send.Key, out var current) && ReferenceEquals(current, send))
        {
            _byId.Remove(send.Key);
            _order.Remove(send);
        }
    }

    public bool TryComplete(Message message)
    {
        if (message.ClientMessageId is not { } id || !_byId.TryGetValue(PendingSend.KeyOf(message.ConversationId, id), out var send)
            || send.Completion.Task.IsCompleted)
        {
            return false;
        }

        Remove(send);
        return send.Completion.TrySetResult(message);
    }

    public bool TryFail(PendingSend send, Exception error)
    {
        Remove(send);
        return send.Completion.TrySetException(error);
    }

    public void FailAll(Exception error)
    {
        foreach (var send in _order)
        {
            send.Completion.TrySetException(error);
        }

        _order.Clear();
        _byId.Clear();
    }

    /// <summary>Sends whose retry is due at <paramref name="now"/>; their retry time is cleared.</summary>
    public List<PendingSend> TakeDue(DateTimeOffset now)
    {
        var due = _order.Where(s => s.RetryAt <= now).ToList();
        foreach (var send in due)
        {
            send.RetryAt = null;
        }

        return due;
    }

    /// <summary>The latest retry time of the sends waiting for one; null when none waits.</summary>
    public DateTimeOffset? LatestRetry()
    {
        DateTimeOffset? latest = null;
        foreach (var send in _order)
        {
            if (send.RetryAt is { } at && (latest is null || at > latest))
            {
                latest = at;
            }
        }

        return latest;
    }

    /// <summary>How long until the next retry is due; null when none is scheduled.</summary>
    public TimeSpan? UntilNextRetry(DateTimeOffset now)
    {
        DateTimeOffset? next = null;
        foreach (var send in _order)
        {
            if (send.RetryAt is { } at && (next is null || at < next))
            {
                next = at;
            }
        }

        return next is { } n ? (n > now ? n - now : TimeSpan.Zero) : null;
    }
}

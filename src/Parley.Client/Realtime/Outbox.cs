using Parley.Client.Protocol;

namespace Parley.Client.Realtime;

/// <summary>
/// What goes out on the socket: the current session (attached when its <c>connected</c> frame arrives, detached
/// when it ends) and the messages sent over it that wait for their acknowledgement, resent with the same frame
/// (and <c>client_message_id</c>) after every reconnect and after passing refusals until it comes
/// (docs/client.md, "Sends").
/// </summary>
/// <remarks>
/// <para>
/// Concurrency: <c>_lock</c> guards the session slot, the pending sends and the closing error, so that a send
/// made while a socket attaches is either resent by <see cref="Attach"/> or queued by <see cref="Add"/> (never
/// neither), a send made after <see cref="Close"/> is refused, and acks are flushed to one socket at a time
/// (lock order: this lock, then the <see cref="AckPacer"/>'s). Never held across an await.
/// </para>
/// <para>
/// A frame the session's queue refuses (it is full) is not lost: a send is tried again after the retry delay,
/// through <paramref name="retryDue"/>, the maintenance loop's wake-up.
/// </para>
/// </remarks>
internal sealed class Outbox(TimeProvider time, TimeSpan retryDelay, Signal retryDue)
{
    private readonly Lock _lock = new();
    private readonly PendingSends _sends = new();
    private Session? _session;
    private Exception? _closed;

    /// <summary>A socket is attached (its <c>connected</c> frame arrived).</summary>
    public bool IsConnected
    {
        get
        {
            lock (_lock)
            {
                return _session is not null;
            }
        }
    }

    /// <summary>Some send waits for its acknowledgement.</summary>
    public bool HasPendingSends
    {
        get
        {
            lock (_lock)
            {
                return _sends.Count > 0;
            }
        }
    }

    /// <summary>The attached socket, if any.</summary>
    public Session? Current
    {
        get
        {
            lock (_lock)
            {
                return _session;
            }
        }
    }

    /// <summary>
    /// A socket is live: every unacknowledged send goes out again, same frame, in order; acks sent on the previous
    /// socket become due again (rule 6 of docs/delivery.md; repeating a watermark is harmless).
    /// </summary>
    public void Attach(Session session, AckPacer acks)
    {
        lock (_lock)
        {
            _session = session;
            foreach (var send in _sends.All)
            {
                send.RetryAt = null;
            }

            EnqueueInOrder(session, _sends.All);
            acks.SocketOpened();
        }
    }

    /// <summary>The socket ended: nothing is queued on it any more.</summary>
    public void Detach(Session session)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_session, session))
            {
                _session = null;
            }
        }
    }

    /// <summary>Registers a send and queues it on the current socket, if any.</summary>
    /// <exception cref="InvalidOperationException">A send with the same client_message_id is waiting already.</exception>
    public void Add(PendingSend send)
    {
        lock (_lock)
        {
            if (_closed is not null)
            {
                throw _closed;
            }

            if (!_sends.TryAdd(send))
            {
                throw new InvalidOperationException(
                    $"A send with client_message_id '{send.ClientMessageId}' in conversation {send.ConversationId} is already waiting for its acknowledgement.");
            }

            if (_sends.LatestRetry() is { } retryAt)
            {
                // An earlier send waits for its retry (refused in passing): this one waits with it and goes out after
                // it, or it would be stored first and everyone would see the two in reverse order.
                send.RetryAt = retryAt;
            }
            else if (_session is { } session)
            {
                EnqueueInOrder(session, [send]);
            }
        }
    }

    /// <summary>The app stopped waiting (cancelled): no more resends.</summary>
    public void Remove(PendingSend send)
    {
        lock (_lock)
        {
            _sends.Remove(send);
        }
    }

    /// <summary>Queues a frame that is not kept (typing, read receipts); false when not connected or the queue is full.</summary>
    public bool TryEnqueue(byte[] frame)
    {
        lock (_lock)
        {
            return _session is { } session && session.TryEnqueue(frame);
        }
    }

    /// <summary><c>message_ack</c>, or the sender's own <c>new_message</c> carrying the id: the send is stored.</summary>
    public void Acknowledged(Message message)
    {
        lock (_lock)
        {
            _sends.TryComplete(message);
        }
    }

    /// <summary>
    /// <c>internal_error</c> may be a passing failure or a send the server can never store (docs/delivery.md): it is
    /// retried this many times, the delay doubling each time, and then the send fails with it.
    /// </summary>
    public const int InternalErrorRetries = 3;

    /// <summary>
    /// An <c>error</c> frame about a send (named by the frame id it echoes, else by its client_message_id): passing
    /// refusals (rate limit, storage unavailable) are retried after the retry delay, <c>internal_error</c>
    /// <see cref="InternalErrorRetries"/> times with back-off, others fail the send. Returns false when no send waits
    /// with that id (the error is someone else's to report).
    /// </summary>
    public bool Refused(string? frameId, string? clientMessageId, string code, string? detail)
    {
        lock (_lock)
        {
            if (_sends.Find(frameId, clientMessageId) is not { } send)
            {
                return false;
            }

            if (code is ParleyErrorCodes.RateLimited or ParleyErrorCodes.ServiceUnavailable)
            {
                send.RetryAt = time.GetUtcNow() + retryDelay;
                retryDue.Set();
            }
            else if (code == ParleyErrorCodes.InternalError && send.InternalErrors < InternalErrorRetries)
            {
                send.RetryAt = time.GetUtcNow() + (retryDelay * Math.Pow(2, send.InternalErrors));
                send.InternalErrors++;
                retryDue.Set();
            }
            else
            {
                _sends.TryFail(send, new ParleyApiException(null, code, detail));
            }

            return true;
        }
    }

    /// <summary>Sends the acks <paramref name="acks"/> has due on the current socket; returns whether more remain due.</summary>
    public bool FlushAcks(AckPacer acks)
    {
        lock (_lock)
        {
            return _session is { } session && acks.Flush((conversationId, seq) => session.TryEnqueue(ClientFrames.Ack(conversationId, seq)));
        }
    }

    /// <summary>Resends the sends whose retry time has come.</summary>
    public void ResendDue()
    {
        lock (_lock)
        {
            if (_session is { } session)
            {
                EnqueueInOrder(session, _sends.TakeDue(time.GetUtcNow()));
            }
        }
    }

    /// <summary>
    /// How long until the next resend is due; null when none is scheduled, or when no socket is attached (the next
    /// <see cref="Attach"/> resends everything: a retry due meanwhile would wake the maintenance loop at once, again
    /// and again, for as long as the device is offline).
    /// </summary>
    public TimeSpan? UntilNextRetry()
    {
        lock (_lock)
        {
            return _session is null ? null : _sends.UntilNextRetry(time.GetUtcNow());
        }
    }

    /// <summary>No more sends: every waiting one fails with <paramref name="error"/>, and so does every later one.</summary>
    public void Close(Exception error)
    {
        lock (_lock)
        {
            _closed ??= error;
            _sends.FailAll(error);
        }
    }

    /// <summary>Queues the sends in order; from the first the queue refuses on, all wait for the retry delay (so the order holds).</summary>
    private void EnqueueInOrder(Session session, IReadOnlyList<PendingSend> sends)
    {
        for (var i = 0; i < sends.Count; i++)
        {
            if (!session.TryEnqueue(sends[i].Frame))
            {
                var retryAt = time.GetUtcNow() + retryDelay;
                for (var j = i; j < sends.Count; j++)
                {
                    sends[j].RetryAt = retryAt;
                }

                retryDue.Set();
                return;
            }
        }
    }
}

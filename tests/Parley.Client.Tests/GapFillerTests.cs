using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Parley.Client.Protocol;
using Parley.Client.Realtime;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>
/// The gap filler on its own, against a scripted sync: when it reads (and when not), from where, page by page,
/// and what each kind of failure leads to.
/// </summary>
[Trait("Store", "Independent")]
public sealed class GapFillerTests : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = FakeParley.Timeout;
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");

    private readonly EventQueue _events = new(100, () => false);
    private readonly DeliveryTracker _delivery;
    private readonly ConcurrentQueue<string> _reads = new();
    private readonly RecordingLogger _logger = new();
    private readonly TaskCompletionSource _restarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private Func<string, SyncPage> _sync = _ => throw new InvalidOperationException("no sync expected");
    private GapFiller? _filler;
    private Task? _loop;

    public GapFillerTests()
    {
        _delivery = new DeliveryTracker(_events.Writer);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static MessageCreatedEvent Msg(long seq) => new()
    {
        ConversationId = C,
        Seq = seq,
        Message = new Message { ConversationId = C, Seq = seq, SenderId = "bob" },
    };

    private static SyncPage Page(string nextCursor, bool hasMore, params long[] seqs) => new([.. seqs.Select(s => (ParleyEvent)Msg(s))], nextCursor, hasMore);

    private static ConnectedPayload Connected(string? cursor) => new("conn-1", "alice", "phone", 25000, true, cursor);

    private void Start(EventQueue? events = null)
    {
        _filler = new GapFiller(
            _delivery,
            events ?? _events,
            (cursor, limit, _) =>
            {
                _reads.Enqueue($"{cursor}/{limit}");
                return Task.FromResult(_sync(cursor));
            },
            pageSize: 500,
            () => _restarted.TrySetResult(),
            TimeProvider.System,
            _logger);
        _loop = _filler.RunAsync(_stopping.Token);
    }

    /// <summary>Live at cursor k0 with seq 1 applied and seq 3 held back: a gap before 3.</summary>
    private void LiveWithAGap(string? cursor = "k0")
    {
        _delivery.Connected(Connected(cursor), presentedCursor: false);
        _delivery.Offer(Msg(1), out _);
        Assert.Equal(OfferResult.Buffered, _delivery.Offer(Msg(3), out _));
    }

    private async Task<List<object>> ReadAsync(int count)
    {
        var items = new List<object>();
        while (items.Count < count)
        {
            Assert.True(await _events.WaitToReadAsync(Ct).AsTask().WaitAsync(Timeout, Ct), "the stream ended");
            while (items.Count < count && _events.TryRead(out var item))
            {
                items.Add(item.Event is ConversationEvent e ? e.Seq : (object?)item.Event ?? item.Cursor!);
            }
        }

        return items;
    }

    [Fact]
    public void NextFill_NoGap_None()
    {
        _delivery.Connected(Connected("k0"), presentedCursor: false);
        _delivery.Offer(Msg(1), out _);

        Assert.Equal(GapFillKind.None, _delivery.NextFill().Kind);
    }

    [Fact]
    public void NextFill_GapWhileCatchingUp_NoneTheCatchUpFillsIt()
    {
        _delivery.Connected(Connected("k9"), presentedCursor: true);
        _delivery.Offer(Msg(1), out _);
        _delivery.Offer(Msg(3), out var catchingUp);

        Assert.True(catchingUp);
        Assert.Equal(GapFillKind.None, _delivery.NextFill().Kind);
        _delivery.SyncComplete("k10");
        Assert.Equal(GapFillKind.FromCursor, _delivery.NextFill().Kind);
    }

    [Fact]
    public void NextFill_GapAfterTheSocketEnded_NoneUntilTheNextOneIsLive()
    {
        LiveWithAGap();
        _delivery.Disconnected();

        Assert.Equal(GapFillKind.None, _delivery.NextFill().Kind);
    }

    [Fact]
    public void NextFill_GapWhileLive_FromTheNewestCursor()
    {
        LiveWithAGap();
        _delivery.OnCursor("k1");

        var fill = _delivery.NextFill();

        Assert.Equal((GapFillKind.FromCursor, "k1"), (fill.Kind, fill.Cursor));
    }

    [Fact]
    public async Task Run_GapWhileLive_ReadsFromTheNewestCursorAndAppliesInOrder()
    {
        _sync = _ => Page("k3", hasMore: false, 2, 3);
        LiveWithAGap();
        Start();

        _filler!.Wake();

        Assert.Equal<object>(["k0", 1L, 2L, 3L, "k3"], await ReadAsync(5));
        Assert.Equal(["k0/500"], _reads);
    }

    [Fact]
    public async Task Run_SyncHasMorePages_FollowsTheirCursors()
    {
        _sync = cursor => cursor == "k0" ? Page("k2", hasMore: true, 2) : Page("k3", hasMore: false, 3);
        LiveWithAGap();
        Start();

        _filler!.Wake();

        // Each page's cursor is released once nothing it covers is held back.
        Assert.Equal<object>(["k0", 1L, 2L, 3L, "k2", "k3"], await ReadAsync(6));
        Assert.Equal(["k0/500", "k2/500"], _reads);
    }

    [Fact]
    public async Task Run_PassingFailures_RetriedWithBackOffUntilFilled()
    {
        var calls = 0;
        _sync = _ => Interlocked.Increment(ref calls) switch
        {
            1 => throw new HttpRequestException("connection reset"),
            2 => throw new ParleyApiException(HttpStatusCode.ServiceUnavailable, ParleyErrorCodes.ServiceUnavailable, null),
            3 => Page("k1", hasMore: false),
            _ => Page("k3", hasMore: false, 2, 3),
        };
        LiveWithAGap();
        Start();

        _filler!.Wake();

        Assert.Equal<object>(["k0", 1L, 2L, 3L, "k3"], await ReadAsync(5));
        Assert.Equal(4, Volatile.Read(ref calls));
        Assert.Equal(2, _logger.Entries.Count(e => e.Name == "GapFillFailed"));
    }

    [Fact]
    public async Task Run_CursorExpired_ResetsAndRestartsTheSocketWithoutACursor()
    {
        _sync = _ => throw new ParleyApiException(HttpStatusCode.Gone, ParleyErrorCodes.CursorExpired, null);
        LiveWithAGap();
        Start();

        _filler!.Wake();

        await _restarted.Task.WaitAsync(Timeout, Ct);
        Assert.Equal<object>(["k0", 1L], await ReadAsync(2));
        Assert.Null(_delivery.LatestCursor);
        Assert.False(_delivery.HasGaps);

        // The app hears of the reset once the next socket is subscribed, not before: a reload done earlier could
        // miss what is committed until then. A cursor from the old socket meanwhile is not the place to resume.
        _delivery.OnCursor("k2");
        _delivery.ApplySyncPage(new SyncPage([], "k2", HasMore: false), [], 0);
        Assert.False(_events.TryRead(out _));
        Assert.Null(_delivery.LatestCursor);
        _delivery.Disconnected();
        _delivery.Connected(Connected("k9"), presentedCursor: false);
        var items = await ReadAsync(2);
        Assert.Equal(ParleyErrorCodes.CursorExpired, Assert.IsType<SyncResetEvent>(items[0]).Reason);
        Assert.Equal("k9", items[1]);
        Assert.Equal("k9", _delivery.LatestCursor);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Reset_FoundWhileTheNextSocketResumesFromACursorReadJustBefore_IsToldOnce(bool serverResetsToo)
    {
        // The reconnect read the cursor, then the gap fill was refused and the reset became due: the new socket presents
        // that cursor. The server answers with its own sync_reset (the cursor expired too) or with a catch-up.
        _delivery.ResetOnNextConnect(ParleyErrorCodes.CursorExpired);
        _delivery.Connected(Connected("k7"), presentedCursor: true);
        if (serverResetsToo)
        {
            _delivery.Reset("fresh", ParleyErrorCodes.CursorExpired, endsCatchUp: true);
        }
        else
        {
            _delivery.SyncComplete("k9");
        }

        var items = await ReadAsync(2);
        Assert.IsType<SyncResetEvent>(items[0]);
        Assert.Equal(serverResetsToo ? "fresh" : "k9", items[1]);
        Assert.False(_events.TryRead(out var more), $"a second item: {more}");
    }

    [Fact]
    public async Task Run_NoSyncEndpoint_SkipsTheGapAndAppliesWhatWasHeld()
    {
        _sync = _ => throw new ParleyApiException(HttpStatusCode.NotFound, "not_found", null);
        LiveWithAGap();
        Start();

        _filler!.Wake();

        Assert.Equal<object>(["k0", 1L, 3L], await ReadAsync(3));
        await _logger.WaitForAsync("GapsSkipped", e => e.Values["Positions"] is 1L, Timeout);
        Assert.False(_restarted.Task.IsCompleted);
    }

    [Fact]
    public async Task Run_ServerGaveNoCursor_SkipsWithoutReading()
    {
        LiveWithAGap(cursor: null);
        Start();

        _filler!.Wake();

        Assert.Equal<object>([1L, 3L], await ReadAsync(2));
        Assert.Empty(_reads);
    }

    [Fact]
    public async Task Run_EventQueueFull_ReadsNoPageUntilTheAppTakesAnEvent()
    {
        var events = new EventQueue(2, () => false);
        var delivery = new DeliveryTracker(events.Writer);
        _sync = _ => Page("k3", hasMore: false, 2, 3);
        delivery.Connected(Connected("k0"), presentedCursor: false);
        delivery.Offer(Msg(1), out _);
        delivery.Offer(Msg(3), out _);
        _filler = new GapFiller(delivery, events, (cursor, limit, _) =>
        {
            _reads.Enqueue($"{cursor}/{limit}");
            return Task.FromResult(_sync(cursor));
        }, 500, () => { }, TimeProvider.System, NullLogger.Instance);
        _loop = _filler.RunAsync(_stopping.Token);

        // k0 and seq 1 fill the queue: the filler waits for room before it reads a page. (Waiting shows no
        // signal: the check is that nothing is read within a bounded time.)
        _filler.Wake();
        await Task.Delay(200, Ct);
        Assert.Empty(_reads);

        Assert.True(events.TryRead(out _));
        var deadline = DateTime.UtcNow + Timeout;
        while (_reads.IsEmpty)
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for the sync");
            await Task.Delay(10, Ct);
        }

        Assert.Equal(["k0/500"], _reads);
    }

    [Theory]
    [InlineData(410, "cursor_expired", "CursorRejected")]
    [InlineData(400, "invalid_cursor", "CursorRejected")]
    [InlineData(410, "gone", "CursorRejected")]
    [InlineData(404, "not_found", "CannotFill")]
    [InlineData(503, "service_unavailable", "Retry")]
    [InlineData(429, "rate_limited", "Retry")]
    public void Classify_ApiError_WhatItMeansForTheGap(int status, string code, string expected) =>
        Assert.Equal(Enum.Parse<GapFillFailure>(expected), GapFiller.Classify(new ParleyApiException((HttpStatusCode)status, code, null)));

    [Fact]
    public void Classify_NetworkAndReadFailures_RetriedAndUnexpectedOnesNot()
    {
        Assert.Equal(GapFillFailure.Retry, GapFiller.Classify(new HttpRequestException("reset")));
        Assert.Equal(GapFillFailure.Retry, GapFiller.Classify(new JsonException("bad page")));
        Assert.Equal(GapFillFailure.Retry, GapFiller.Classify(new IOException("reset")));
        Assert.Equal(GapFillFailure.Retry, GapFiller.Classify(new TaskCanceledException("HttpClient timeout")));
        Assert.Null(GapFiller.Classify(new InvalidOperationException("a bug")));
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(Timeout);
        }

        _stopping.Dispose();
    }
}

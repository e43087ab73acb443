using Parley.Client.Realtime;
using Parley.Client.Tests.Infrastructure;

namespace Parley.Client.Tests;

/// <summary>Cursor persistence: what a checkpoint holds, when it is saved, and what happens when saving fails or races.</summary>
[Trait("Store", "Independent")]
public sealed class CheckpointerTests
{
    private static readonly Guid C = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc2");
    private static readonly Guid D = Guid.Parse("01a20b3e-940d-7fab-a2e1-d6da9c0eafc3");

    private readonly ScriptedStore _store = new();
    private readonly RecordingLogger _logger = new();
    private readonly Checkpointer _checkpoints;

    public CheckpointerTests()
    {
        _checkpoints = new Checkpointer(_store, _logger);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SaveDue_CursorReached_SavedWithThePositionsConsumedBeforeItOnly()
    {
        _checkpoints.Restore(new Dictionary<Guid, long> { [C] = 2, [D] = 5 });
        _checkpoints.Consumed(C, 3);
        _checkpoints.CursorReached("k3");

        // Consumed after the cursor: not part of its checkpoint.
        _checkpoints.Consumed(C, 4);
        await _checkpoints.SaveDueAsync(Ct);

        var saved = Assert.Single(_store.Saved);
        Assert.Equal("k3", saved.Cursor);
        Assert.Equal(new Dictionary<Guid, long> { [C] = 3, [D] = 5 }, saved.Positions);
        Assert.Null(_checkpoints.Due);
    }

    [Fact]
    public async Task SaveDue_NoCursorReached_SavesNothing()
    {
        _checkpoints.Consumed(C, 1);

        await _checkpoints.SaveDueAsync(Ct);

        Assert.Empty(_store.Saved);
    }

    [Fact]
    public async Task SaveDue_TwoCursorsReachedBetweenSaves_OnlyTheNewestIsSaved()
    {
        _checkpoints.Consumed(C, 1);
        _checkpoints.CursorReached("k1");
        _checkpoints.Consumed(C, 2);
        _checkpoints.CursorReached("k2");

        await _checkpoints.SaveDueAsync(Ct);
        await _checkpoints.SaveDueAsync(Ct);

        Assert.Equal(["k2"], _store.Saved.Select(c => c.Cursor));
    }

    [Fact]
    public void Consumed_OlderSeq_DoesNotMoveThePositionBack()
    {
        _checkpoints.Consumed(C, 5);
        _checkpoints.Consumed(C, 3);
        _checkpoints.CursorReached("k5");

        Assert.Equal(5, _checkpoints.Due!.Positions[C]);
    }

    [Fact]
    public void Forget_AfterASyncReset_TheNextCheckpointHasNoOldPositions()
    {
        _checkpoints.Consumed(C, 5);
        _checkpoints.Forget();
        _checkpoints.Consumed(D, 1);
        _checkpoints.CursorReached("fresh");

        Assert.Equal(new Dictionary<Guid, long> { [D] = 1 }, _checkpoints.Due!.Positions);
    }

    [Fact]
    public async Task SaveDue_StoreFails_LoggedAndTheCheckpointStaysDueForTheNextSave()
    {
        _store.FailNext = true;
        _checkpoints.CursorReached("k1");

        await _checkpoints.SaveDueAsync(Ct);

        Assert.Empty(_store.Saved);
        Assert.Equal("k1", _checkpoints.Due?.Cursor);
        Assert.Contains(_logger.Entries, e => e.Name == "CheckpointSaveFailed");
        await _checkpoints.SaveDueAsync(Ct);
        Assert.Equal(["k1"], _store.Saved.Select(c => c.Cursor));
        Assert.Null(_checkpoints.Due);
    }

    [Fact]
    public async Task SaveDue_NewerCursorReachedWhileSaving_TheNewerStaysDue()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _store.Gate = release.Task;
        _checkpoints.CursorReached("k1");

        var saving = _checkpoints.SaveDueAsync(Ct);
        _checkpoints.CursorReached("k2");
        release.SetResult();
        await saving.WaitAsync(FakeParley.Timeout, Ct);

        Assert.Equal(["k1"], _store.Saved.Select(c => c.Cursor));
        Assert.Equal("k2", _checkpoints.Due?.Cursor);
    }

    /// <summary>Records saves; can fail the next one or hold saves until a gate opens.</summary>
    private sealed class ScriptedStore : ICursorStore
    {
        public List<DeliveryCheckpoint> Saved { get; } = [];

        public bool FailNext { get; set; }

        public Task Gate { get; set; } = Task.CompletedTask;

        public ValueTask<DeliveryCheckpoint?> LoadAsync(CancellationToken cancellationToken) => ValueTask.FromResult<DeliveryCheckpoint?>(null);

        public async ValueTask SaveAsync(DeliveryCheckpoint checkpoint, CancellationToken cancellationToken)
        {
            await Gate.WaitAsync(cancellationToken);
            if (FailNext)
            {
                FailNext = false;
                throw new IOException("disk full");
            }

            Saved.Add(checkpoint);
        }
    }
}

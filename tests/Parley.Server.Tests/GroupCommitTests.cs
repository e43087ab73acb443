using Parley.Server.Storage.Sql;

namespace Parley.Server.Tests;

/// <summary>
/// Group commit's failure paths: a batch that failed in one of its writes is split so that only that write fails; a
/// batch whose transaction could not start (the database unreachable) fails as a whole, at once, instead of every write
/// waiting for the same connection timeout again on its own.
/// </summary>
[Trait("Store", "Independent")]
public sealed class GroupCommitTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ABatchWhoseTransactionCannotStart_FailsEveryWriteAtOnceWithTheDatabasesError()
    {
        var unreachable = new InvalidOperationException("connection refused");
        var commits = new CommitScript(batch => batch.Count > 1 ? throw new BatchNotStartedException(unreachable) : Task.CompletedTask);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 5);

        foreach (var write in writes)
        {
            Assert.Same(unreachable, await Assert.ThrowsAsync<InvalidOperationException>(() => write.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        }

        Assert.Equal([1, 5], commits.Sizes); // the first write alone, then the batch once: never the five one by one
    }

    [Fact]
    public async Task ABatchFailingInOneWrite_IsSplit_AndOnlyThatWriteFails()
    {
        var bad = new InvalidOperationException("rule broken");
        PendingTestWrite? poison = null;
        var commits = new CommitScript(batch => batch.Contains(poison!) ? throw bad : Task.CompletedTask);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 4, created => poison ??= created.Count == 2 ? created[1] : null);

        await writes[0].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Same(bad, await Assert.ThrowsAsync<InvalidOperationException>(() => writes[1].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        await writes[2].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await writes[3].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal([1, 4, 1, 1, 1, 1], commits.Sizes);
    }

    [Fact]
    public async Task TheDatabaseGoneWhileABatchIsSplit_TheRestFailAtOnce()
    {
        var bad = new InvalidOperationException("rule broken");
        var unreachable = new InvalidOperationException("connection refused");
        var commits = new CommitScript(batch => batch.Count switch
        {
            1 when batch is [PendingTestWrite { Index: 0 }] => Task.CompletedTask,
            > 1 => throw bad,
            _ => throw new BatchNotStartedException(unreachable),
        });
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 4);

        foreach (var write in writes)
        {
            Assert.Same(unreachable, await Assert.ThrowsAsync<InvalidOperationException>(() => write.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        }

        Assert.Equal([1, 4, 1], commits.Sizes);
    }

    public static TheoryData<string> SlowFailures => ["timeout", "command timeout", "lock held elsewhere", "statement timeout"];

    private static Exception SlowFailure(string kind) => kind switch
    {
        "timeout" => new TimeoutException("Timeout during reading attempt"),
        "command timeout" => new Npgsql.NpgsqlException("Exception while reading from stream", new TimeoutException("Timeout during reading attempt")),
        "lock held elsewhere" => new Npgsql.PostgresException("canceling statement due to lock timeout", "ERROR", "ERROR", Npgsql.PostgresErrorCodes.LockNotAvailable),
        _ => new Npgsql.PostgresException("canceling statement due to statement timeout", "ERROR", "ERROR", Npgsql.PostgresErrorCodes.QueryCanceled),
    };

    [Theory]
    [MemberData(nameof(SlowFailures))]
    public async Task ABatchTimingOut_WhoseWritesTimeOutAloneToo_FailsTheRestAfterTheSecond(string kind)
    {
        // A table locked elsewhere: split one by one, each write waited the whole timeout again (a batch of 128 held its lane
        // for 129 command timeouts, over 20 minutes by default).
        var error = SlowFailure(kind);
        var commits = new CommitScript(batch => batch is [PendingTestWrite { Index: 0 }] ? Task.CompletedTask : throw error);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 5);

        foreach (var write in writes)
        {
            Assert.Same(error, await Assert.ThrowsAnyAsync<Exception>(() => write.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        }

        Assert.Equal([1, 5, 1, 1], commits.Sizes);
    }

    [Fact]
    public async Task ABatchTimingOutOnOneLockedConversation_IsSplit_AndOnlyThatWriteFails()
    {
        var error = SlowFailure("lock held elsewhere");
        var commits = new CommitScript(batch => batch.Count > 1 || batch is [PendingTestWrite { Index: 2 }] ? throw error : Task.CompletedTask);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 4);

        await writes[0].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Same(error, await Assert.ThrowsAnyAsync<Exception>(() => writes[1].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        await writes[2].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        await writes[3].Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal([1, 4, 1, 1, 1, 1], commits.Sizes);
    }

    public static TheoryData<string> FastFailures => ["broken connection", "deadlock"];

    [Theory]
    [MemberData(nameof(FastFailures))]
    public async Task ABatchFailingFast_IsSplit_AndEachWriteRunsAgain(string kind)
    {
        // A pooled connection the database or a firewall dropped, or a deadlock, fails fast: run again, each write gets a
        // fresh connection (or no longer meets the other transaction) and passes.
        Exception error = kind == "deadlock"
            ? new Npgsql.PostgresException("deadlock detected", "ERROR", "ERROR", Npgsql.PostgresErrorCodes.DeadlockDetected)
            : new Npgsql.NpgsqlException("Exception while reading from stream", new IOException("Connection reset by peer"));
        var commits = new CommitScript(batch => batch.Count > 1 ? throw error : Task.CompletedTask);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 3);

        foreach (var write in writes)
        {
            await write.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        }

        Assert.Equal([1, 3, 1, 1, 1], commits.Sizes);
    }

    [Fact]
    public async Task ABatchWhoseCommitOutcomeIsUnknown_FailsEveryWrite_AndRunsNoneAgain()
    {
        // Written or not, the database cannot say: a write run again could be stored twice (a send without client_message_id).
        var broken = new IOException("Connection reset by peer");
        var commits = new CommitScript(batch => batch.Count > 1 ? throw new CommitOutcomeUnknownException(broken) : Task.CompletedTask);
        var group = new GroupCommit(lanes: 1, capacity: 100, commits.CommitAsync);

        var writes = await commits.QueueBatchBehindAFirstWriteAsync(group, 4);

        foreach (var write in writes)
        {
            Assert.Same(broken, await Assert.ThrowsAsync<IOException>(() => write.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct)));
        }

        Assert.Equal([1, 4], commits.Sizes);
    }

    /// <summary>Records each batch's size and answers it with the given rule; the first commit waits until released.</summary>
    private sealed class CommitScript(Func<IReadOnlyList<PendingWrite>, Task> rule)
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _firstStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<int> _sizes = [];

        public List<int> Sizes
        {
            get
            {
                lock (_sizes)
                {
                    return [.. _sizes];
                }
            }
        }

        public async Task CommitAsync(IReadOnlyList<PendingWrite> batch)
        {
            bool first;
            lock (_sizes)
            {
                first = _sizes.Count == 0;
                _sizes.Add(batch.Count);
            }

            if (first)
            {
                _firstStarted.TrySetResult();
                await _release.Task;
            }

            await rule(batch);
        }

        /// <summary>
        /// Queues one write, and while its commit runs, <paramref name="count"/> more (one batch); then lets the first
        /// finish. Returns the queued batch's writes (the first write is index 0 of the script, not returned).
        /// </summary>
        public async Task<List<PendingTestWrite>> QueueBatchBehindAFirstWriteAsync(GroupCommit group, int count, Action<List<PendingTestWrite>>? created = null)
        {
            var conversation = Guid.CreateVersion7();
            var first = new PendingTestWrite(conversation, 0);
            await group.EnqueueAsync(first, Ct);
            await _firstStarted.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            var writes = new List<PendingTestWrite>();
            for (var i = 1; i <= count; i++)
            {
                writes.Add(new PendingTestWrite(conversation, i));
                created?.Invoke(writes);
                await group.EnqueueAsync(writes[^1], Ct);
            }

            _release.TrySetResult();
            await first.Outcome.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            return writes;
        }
    }

    internal sealed class PendingTestWrite(Guid conversationId, int index) : PendingWrite
    {
        private readonly TaskCompletionSource _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Index => index;

        public Task Outcome => _outcome.Task;

        public override Guid ConversationId => conversationId;

        public override Task RunAsync(SqlSession session) => Task.CompletedTask;

        public override void Complete() => _outcome.TrySetResult();

        public override void Fail(Exception exception) => _outcome.TrySetException(exception);
    }
}

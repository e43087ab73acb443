using Microsoft.Data.Sqlite;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// Copies the write-ahead log into the database file on a connection of its own, shortly after writes, so that the
/// single writer does not: SQLite checkpoints in the connection that commits, and the copy with its two
/// <c>fsync</c>s took about half of the writer's time per send (benchmarks.md, item 19). The checkpoints here are
/// <c>PASSIVE</c>: they never block the writer or a reader. The writer keeps a larger automatic checkpoint of its own
/// (<see cref="WriterAutoCheckpointPages"/>): with the log already copied up to a few milliseconds ago it has little
/// left to copy, and only a checkpoint that ends between two write transactions lets the next one start the log
/// over from its beginning, which bounds the log's size.
/// </summary>
internal sealed class WalCheckpointer : IAsyncDisposable
{
    /// <summary>The writer's automatic checkpoint (pages of the log), the fallback that also restarts the log.</summary>
    public const int WriterAutoCheckpointPages = 8000;

    /// <summary>How long after a write the checkpoint runs: the writes of that time are copied together.</summary>
    private static readonly TimeSpan Pace = TimeSpan.FromMilliseconds(50);

    /// <summary>After a failed checkpoint (the file is busy or the disk failed), the next try waits this long.</summary>
    private static readonly TimeSpan Backoff = TimeSpan.FromSeconds(1);

    private readonly string _connectionString;
    private readonly SemaphoreSlim _written = new(0, 1); // released once per pass asked for (_pending)
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _pending; // 1 while a pass is asked for and has not started

    public WalCheckpointer(string connectionString)
    {
        _connectionString = connectionString;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>
    /// A write transaction ended (committed or not): a pass follows after <see cref="Pace"/>, so what it committed is
    /// copied even when no write follows it. Never blocks, and costs nothing more while a pass is already asked for.
    /// Nothing happens once the checkpointer is stopped.
    /// </summary>
    public void Written()
    {
        if (Interlocked.Exchange(ref _pending, 1) == 0 && !_stop.IsCancellationRequested)
        {
            try
            {
                _written.Release();
            }
            catch (ObjectDisposedException)
            {
                // Stopped in between: the store is closing, and its last writer checkpoints the log itself.
            }
        }
    }

    private async Task RunAsync()
    {
        SqliteConnection? connection = null;
        try
        {
            while (true)
            {
                await _written.WaitAsync(_stop.Token);
                await Task.Delay(Pace, _stop.Token);
                // Writes from here on ask for the next pass; this one copies what was committed before it starts.
                Volatile.Write(ref _pending, 0);
                try
                {
                    if (connection is null)
                    {
                        connection = new SqliteConnection(_connectionString);
                        await connection.OpenAsync(_stop.Token);
                    }

                    await using var command = connection.CreateCommand();
                    command.CommandText = "PRAGMA wal_checkpoint(PASSIVE);";
                    await command.ExecuteNonQueryAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is SqliteException or IOException)
                {
                    // The writer's own automatic checkpoint still runs: nothing is lost by a skipped pass.
                    if (connection is not null)
                    {
                        await connection.DisposeAsync();
                        connection = null;
                    }

                    await Task.Delay(Backoff, _stop.Token);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        finally
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }
        }
    }

    /// <summary>Stops the passes (waiting for one that runs); the writer's own checkpoints remain.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _written.Dispose();
        _stop.Dispose();
    }
}

using System.Data.Common;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The connection a write transaction (or a read) runs on, with an optional cache of the statements it prepares
/// (<see cref="Statements"/>): a batch of sends runs the same few statements again and again, and compiling them can
/// cost more than running them. <paramref name="closed"/> is told once when a kept connection is closed. A pooled
/// connection is closed (returned to its pool) after its transaction. A kept one (<paramref name="keep"/> given:
/// SQLite's single writer and its kept readers) stays open with its prepared statements for the next
/// transaction while <paramref name="keep"/> says so (its owner has not stopped), but only after a transaction that
/// ended cleanly (<see cref="Completed"/>); otherwise it is closed and <see cref="IsClosed"/>, and its owner opens a new one.
/// </summary>
internal sealed class WriteConnection(DbConnection connection, StatementCache? statements, Func<bool>? keep = null, Action? closed = null) : IAsyncDisposable
{
    private bool _completed;

    public DbConnection Connection => connection;

    /// <summary>Prepared statements to reuse within the transaction; null where the driver prepares by itself.</summary>
    public StatementCache? Statements => statements;

    /// <summary>A kept connection that was closed after a transaction that did not end cleanly.</summary>
    public bool IsClosed { get; private set; }

    /// <summary>Before a transaction on a kept connection.</summary>
    public void Begin()
    {
        _completed = false;
        if (statements is { IsFull: true })
        {
            // Generated texts (lists of placeholders of every length) filled it over time: start again.
            statements.Clear();
        }
    }

    /// <summary>The transaction committed or rolled back: a kept connection may serve the next one.</summary>
    public void Completed() => _completed = true;

    public ValueTask DisposeAsync()
    {
        if (_completed && keep is not null && keep())
        {
            return ValueTask.CompletedTask;
        }

        return CloseAsync();
    }

    /// <summary>Closes the connection and its statements (a kept one when its owner stops).</summary>
    public ValueTask CloseAsync()
    {
        if (!IsClosed)
        {
            IsClosed = true;
            closed?.Invoke();
        }

        statements?.Clear();
        return connection.DisposeAsync();
    }
}

/// <summary>
/// Commands of one connection by their SQL text, each prepared on its first execution and executed again with new
/// parameter values. Not thread-safe: one transaction uses it. Bounded: texts beyond <see cref="Capacity"/> (generated lists of placeholders) get one-off commands.
/// <paramref name="create"/> makes a command for a text (the connection's own kind of command when not given).
/// </summary>
internal sealed class StatementCache(DbConnection connection, Func<string, DbCommand>? create = null)
{
    public const int Capacity = 128;

    private readonly Dictionary<string, DbCommand> _commands = new(StringComparer.Ordinal);

    public bool IsFull => _commands.Count >= Capacity;

    /// <summary>The cached command for <paramref name="text"/>, its parameters cleared; null when the cache is full.</summary>
    public DbCommand? Get(string text)
    {
        if (_commands.TryGetValue(text, out var command))
        {
            if (command is Sqlite.SqliteStatementCommand statement)
            {
                statement.ResetBindings();
            }
            else
            {
                command.Parameters.Clear();
            }

            return command;
        }

        if (_commands.Count >= Capacity)
        {
            return null;
        }

        if (create is not null)
        {
            command = create(text);
        }
        else
        {
            command = connection.CreateCommand();
            command.CommandText = text;
        }

        _commands[text] = command;
        return command;
    }

    /// <summary>Disposes every command (their prepared statements with them).</summary>
    public void Clear()
    {
        foreach (var command in _commands.Values)
        {
            command.Dispose();
        }

        _commands.Clear();
    }
}

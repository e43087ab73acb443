using System.Data.Common;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The connection a write transaction runs on, closed (returned to its pool) after it, with an optional cache of
/// the statements the transaction prepares (<see cref="Statements"/>): a batch of sends runs the same few statements
/// again and again, and compiling them can cost more than running them.
/// </summary>
internal sealed class WriteConnection(DbConnection connection, StatementCache? statements) : IAsyncDisposable
{
    public DbConnection Connection => connection;

    /// <summary>Prepared statements to reuse within the transaction; null where the driver prepares by itself.</summary>
    public StatementCache? Statements => statements;

    public ValueTask DisposeAsync()
    {
        statements?.Clear();
        return connection.DisposeAsync();
    }
}

/// <summary>
/// Commands of one connection by their SQL text, each prepared on its first execution and executed again with new
/// parameter values. Not thread-safe: one transaction uses it. Bounded: texts beyond <see cref="Capacity"/> (generated lists of placeholders) get one-off commands.
/// </summary>
internal sealed class StatementCache(DbConnection connection)
{
    public const int Capacity = 128;

    private readonly Dictionary<string, DbCommand> _commands = new(StringComparer.Ordinal);

    /// <summary>The cached command for <paramref name="text"/>, its parameters cleared; null when the cache is full.</summary>
    public DbCommand? Get(string text)
    {
        if (_commands.TryGetValue(text, out var command))
        {
            command.Parameters.Clear();
            return command;
        }

        if (_commands.Count >= Capacity)
        {
            return null;
        }

        command = connection.CreateCommand();
        command.CommandText = text;
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

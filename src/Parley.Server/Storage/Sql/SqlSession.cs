using System.Data.Common;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Parley.Server.Storage.Sql;

/// <summary>A connection (and, for writes, its transaction) with the dialect that binds and reads values.</summary>
/// <remarks>With <paramref name="statements"/>, commands are taken from (and left in) that cache of prepared statements.</remarks>
internal sealed class SqlSession(DbConnection connection, DbTransaction? transaction, SqlDialect dialect, StatementCache? statements = null)
{
    private Guid[]? _locks;
    private bool _identify;

    public SqlDialect Dialect => dialect;

    public SqlCommand Sql(string text)
    {
        if (statements?.Get(text) is { } cached)
        {
            cached.Transaction = transaction;
            return new SqlCommand(cached, dialect, reused: true, this);
        }

        var command = connection.CreateCommand();
        command.CommandText = text;
        command.Transaction = transaction;
        return new SqlCommand(command, dialect, reused: false, this);
    }

    /// <summary>Commands to send together, in one round trip (only where the dialect binds by position).</summary>
    public SqlPipeline Pipeline() =>
        dialect.BindsByPosition
            ? new SqlPipeline(this, connection, transaction)
            : throw new NotSupportedException($"{dialect.Provider} runs one command at a time.");

    /// <summary>
    /// Locks <paramref name="conversationIds"/> until commit (<see cref="SqlDialect.LockConversationsSql"/>, in
    /// <see cref="SqlDialect.LockOrder"/>) before the next command's statements run, in that command's round trip when
    /// it reads rows, in one of its own otherwise. Nothing where the dialect needs no locks.
    /// </summary>
    public void LockWithNextCommand(IEnumerable<Guid> conversationIds)
    {
        if (!dialect.LocksConversations)
        {
            return;
        }

        var ids = conversationIds.Distinct().ToArray();
        if (ids.Length > 0)
        {
            Array.Sort(ids, SqlDialect.LockOrder);
            _locks = ids;
        }
    }

    /// <summary>
    /// Reads the transaction's id (<see cref="SqlDialect.TransactionIdSql"/>) into <see cref="Transaction"/> ahead of
    /// the next command, in the same round trip; nothing where the dialect has no such statement.
    /// </summary>
    public void IdentifyWithNextCommand() => _identify = dialect.TransactionIdSql is not null;

    /// <summary>The write transaction's id and server process, once read (<see cref="IdentifyWithNextCommand"/>).</summary>
    public TransactionIdentity? Transaction { get; private set; }

    /// <summary>Runs what no command has run yet (the transaction's id, the locks) in a round trip of its own (before a commit, or a command that reads no rows).</summary>
    public Task FlushPreludeAsync(CancellationToken cancellationToken) => RunPreludeAsync(TakePrelude(), cancellationToken);

    /// <summary>What must still run ahead of the next command, now handed to the caller, which runs it.</summary>
    public Prelude TakePrelude()
    {
        var prelude = new Prelude(_identify, _locks);
        _locks = null;
        _identify = false;
        return prelude;
    }

    /// <summary>Runs <paramref name="prelude"/> (when not empty) in a round trip of its own.</summary>
    public async Task RunPreludeAsync(Prelude prelude, CancellationToken cancellationToken)
    {
        if (prelude.IsEmpty)
        {
            return;
        }

        if (prelude.Identify)
        {
            await using var batch = connection.CreateBatch();
            batch.Transaction = transaction;
            await using var values = connection.CreateCommand();
            AddPreludeStatements(batch, prelude, values);
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
            await ReadTransactionAsync(reader, cancellationToken);
            while (await reader.NextResultAsync(cancellationToken))
            {
                // the locks' empty results: reading past them surfaces a lock statement's error here
            }

            return;
        }

        var command = connection.CreateCommand();
        command.CommandText = dialect.LockConversationsSql(prelude.Locks!.Length);
        command.Transaction = transaction;
        BindLocks(command, prelude.Locks);
        await new SqlCommand(command, dialect, reused: false, this).ExecuteAsync(cancellationToken);
    }

    /// <summary>
    /// Adds the statements of <paramref name="prelude"/> to <paramref name="batch"/> (ahead of what follows), the lock
    /// values bound into <paramref name="values"/> (lock parameters have names no other statement uses).
    /// </summary>
    public void AddPreludeStatements(DbBatch batch, Prelude prelude, DbCommand values)
    {
        if (prelude.Identify)
        {
            var identify = batch.CreateBatchCommand();
            identify.CommandText = dialect.TransactionIdSql!;
            batch.BatchCommands.Add(identify);
        }

        if (prelude.Locks is { } locks)
        {
            BindLocks(values, locks);
            SqlCommand.AddStatements(batch, PositionalSql.Split(dialect.LockConversationsSql(locks.Length))!, values, dialect);
        }
    }

    /// <summary>Reads the results of <paramref name="prelude"/> at the head of <paramref name="reader"/>'s batch and moves past them.</summary>
    public async Task ReadPreludeResultsAsync(DbDataReader reader, Prelude prelude, CancellationToken cancellationToken)
    {
        var skip = prelude.Locks?.Length ?? 0;
        if (prelude.Identify)
        {
            await ReadTransactionAsync(reader, cancellationToken);
            skip++;
        }

        for (var i = 0; i < skip; i++)
        {
            if (!await reader.NextResultAsync(cancellationToken))
            {
                throw new InvalidOperationException("The batch returned fewer result sets than its prelude.");
            }
        }
    }

    private async Task ReadTransactionAsync(DbDataReader reader, CancellationToken cancellationToken)
    {
        if (!await reader.ReadAsync(cancellationToken))
        {
            throw new InvalidOperationException("The transaction's id was not returned.");
        }

        Transaction = new TransactionIdentity(reader.GetString(0), reader.GetInt32(1));
    }

    private void BindLocks(DbCommand command, Guid[] locks)
    {
        for (var i = 0; i < locks.Length; i++)
        {
            dialect.BindGuid(command, SqlDialect.LockParameter(i), locks[i]);
        }
    }
}

/// <summary>A command being built: parameters bound through the dialect, then executed once (a cached one is kept for the next time).</summary>
internal sealed class SqlCommand(DbCommand command, SqlDialect dialect, bool reused, SqlSession session) : IAsyncDisposable
{
    private DbBatch? _batch;

    public SqlCommand With(string name, Guid value)
    {
        dialect.BindGuid(command, name, value);
        return this;
    }

    public SqlCommand With(string name, Guid? value)
    {
        dialect.BindGuid(command, name, value);
        return this;
    }

    public SqlCommand With(string name, DateTimeOffset value)
    {
        dialect.BindTime(command, name, value);
        return this;
    }

    public SqlCommand With(string name, DateTimeOffset? value)
    {
        dialect.BindTime(command, name, value);
        return this;
    }

    public SqlCommand With(string name, string? value)
    {
        dialect.BindText(command, name, value);
        return this;
    }

    public SqlCommand With(string name, long value)
    {
        dialect.BindLong(command, name, value);
        return this;
    }

    public SqlCommand With(string name, long? value)
    {
        dialect.BindLong(command, name, value);
        return this;
    }

    /// <summary>A timeout of its own (seconds; 0 = none) for a statement that may run longer than a request's.</summary>
    public SqlCommand WithTimeout(int seconds)
    {
        command.CommandTimeout = seconds;
        return this;
    }

    public SqlCommand WithJson<T>(string name, T? value, JsonTypeInfo<T> typeInfo)
        where T : class =>
        With(name, value is null ? null : JsonSerializer.Serialize(value, typeInfo));

    /// <summary>
    /// Runs the command for its rows, with the session's pending locks in the same round trip when there are any: their
    /// statements go first, and their (empty to the caller) results are skipped.
    /// </summary>
    private async Task<DbDataReader> ExecuteReaderAsync(CancellationToken cancellationToken)
    {
        var prelude = session.TakePrelude();
        if (Batch(prelude) is not { } batch)
        {
            // Not a batch: the prelude, if any, goes first, on its own.
            await session.RunPreludeAsync(prelude, cancellationToken);
            return await command.ExecuteReaderAsync(cancellationToken);
        }

        var reader = await batch.ExecuteReaderAsync(cancellationToken);
        try
        {
            await session.ReadPreludeResultsAsync(reader, prelude, cancellationToken);
            return reader;
        }
        catch
        {
            await reader.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Where the provider binds by position (<see cref="SqlDialect.BindsByPosition"/>): the command's statements (after
    /// the statements of <paramref name="prelude"/>) as one batch with positional parameters, built from
    /// the values bound by name (<see cref="PositionalSql"/>); null where the command runs as it is.
    /// </summary>
    private DbBatch? Batch(Prelude prelude)
    {
        if (!dialect.BindsByPosition || (command.Parameters.Count == 0 && prelude.IsEmpty)
            || PositionalSql.Split(command.CommandText) is not { } statements)
        {
            return null;
        }

        _batch = command.Connection!.CreateBatch();
        _batch.Transaction = command.Transaction;
        _batch.Timeout = command.CommandTimeout;
        session.AddPreludeStatements(_batch, prelude, command);
        AddStatements(_batch, statements, command, dialect);
        return _batch;
    }

    /// <summary>Adds <paramref name="statements"/> to <paramref name="batch"/>, with the values <paramref name="source"/> has bound by name.</summary>
    internal static void AddStatements(DbBatch batch, PositionalStatement[] statements, DbCommand source, SqlDialect dialect)
    {
        foreach (var statement in statements)
        {
            var batchCommand = batch.CreateBatchCommand();
            batchCommand.CommandText = statement.Sql;
            foreach (var name in statement.Parameters)
            {
                var index = source.Parameters.IndexOf(name);
                if (index < 0)
                {
                    throw new InvalidOperationException($"No value was bound for {name}.");
                }

                batchCommand.Parameters.Add(dialect.PositionalCopy(source.Parameters[index]));
            }

            batch.BatchCommands.Add(batchCommand);
        }
    }

    /// <summary>Disposes the batch the command ran as, if any, and the command, unless a statement cache keeps it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_batch is not null)
        {
            await _batch.DisposeAsync();
        }

        if (!reused)
        {
            await command.DisposeAsync();
        }
    }

    public async Task<int> ExecuteAsync(CancellationToken cancellationToken)
    {
        await using (this)
        {
            // Its count of changed rows must be this command's own: the prelude goes first, on its own.
            await session.FlushPreludeAsync(cancellationToken);
            return Batch(default) is { } batch
                ? await batch.ExecuteNonQueryAsync(cancellationToken)
                : await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    public async Task<object?> ScalarAsync(CancellationToken cancellationToken)
    {
        await using (this)
        {
            await session.FlushPreludeAsync(cancellationToken);
            var value = Batch(default) is { } batch
                ? await batch.ExecuteScalarAsync(cancellationToken)
                : await command.ExecuteScalarAsync(cancellationToken);
            return value is DBNull ? null : value;
        }
    }

    public async Task<List<T>> ListAsync<T>(Func<SqlRow, T> read, CancellationToken cancellationToken)
    {
        await using (this)
        {
            var list = new List<T>();
            await using var reader = await ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                list.Add(read(new SqlRow(reader, dialect)));
            }

            return list;
        }
    }

    /// <summary>
    /// Runs a command of several statements in one round trip and hands its result sets to <paramref name="read"/>,
    /// which takes them in order (<see cref="SqlResults.NextAsync{T}"/>).
    /// </summary>
    public async Task<T> ReadResultsAsync<T>(Func<SqlResults, Task<T>> read, CancellationToken cancellationToken)
    {
        await using (this)
        {
            await using var reader = await ExecuteReaderAsync(cancellationToken);
            return await read(new SqlResults(reader, dialect, cancellationToken));
        }
    }

    public async Task<T?> FirstOrDefaultAsync<T>(Func<SqlRow, T> read, CancellationToken cancellationToken)
        where T : class
    {
        await using (this)
        {
            await using var reader = await ExecuteReaderAsync(cancellationToken);
            return await reader.ReadAsync(cancellationToken) ? read(new SqlRow(reader, dialect)) : null;
        }
    }
}

/// <summary>
/// Several commands sent in one round trip, where the provider binds by position (<see cref="SqlSession.Pipeline"/>):
/// each is added and bound like a command of its own (the same parameter names may recur: each command keeps its
/// values), then all their statements run as one batch, after the session's pending locks. A statement that fails
/// stops the rest; the transaction is then to be rolled back.
/// </summary>
internal sealed class SqlPipeline(SqlSession session, DbConnection connection, DbTransaction? transaction)
{
    private readonly List<(DbCommand Command, PositionalStatement[] Statements)> _commands = [];

    /// <summary>Adds a command of <paramref name="text"/>, to bind (its <c>With</c> calls), never to run by itself.</summary>
    public SqlCommand Add(string text)
    {
        var command = connection.CreateCommand();
        command.CommandText = text;
        command.Transaction = transaction;
        var statements = PositionalSql.Split(text) ?? throw new InvalidOperationException("A pipelined command must split into statements.");
        _commands.Add((command, statements));
        return new SqlCommand(command, session.Dialect, reused: false, session);
    }

    /// <summary>Runs the commands and hands the result sets of all of them, in order, to <paramref name="read"/>.</summary>
    public async Task<T> ReadResultsAsync<T>(Func<SqlResults, Task<T>> read, CancellationToken cancellationToken)
    {
        try
        {
            var prelude = session.TakePrelude();
            await using var batch = Build(prelude);
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
            await session.ReadPreludeResultsAsync(reader, prelude, cancellationToken);
            return await read(new SqlResults(reader, session.Dialect, cancellationToken));
        }
        finally
        {
            await DisposeCommandsAsync();
        }
    }

    /// <summary>Runs the commands for their effects (nothing when none was added).</summary>
    public async Task ExecuteAsync(CancellationToken cancellationToken)
    {
        try
        {
            await session.FlushPreludeAsync(cancellationToken);
            if (_commands.Count > 0)
            {
                await using var batch = Build(default);
                await batch.ExecuteNonQueryAsync(cancellationToken);
            }
        }
        finally
        {
            await DisposeCommandsAsync();
        }
    }

    private DbBatch Build(Prelude prelude)
    {
        var batch = connection.CreateBatch();
        batch.Transaction = transaction;
        if (!prelude.IsEmpty)
        {
            using var preludeValues = connection.CreateCommand();
            session.AddPreludeStatements(batch, prelude, preludeValues);
        }

        foreach (var (command, statements) in _commands)
        {
            SqlCommand.AddStatements(batch, statements, command, session.Dialect);
        }

        return batch;
    }

    private async Task DisposeCommandsAsync()
    {
        foreach (var (command, _) in _commands)
        {
            await command.DisposeAsync();
        }

        _commands.Clear();
    }
}

/// <summary>The result sets of one multi-statement command, taken in the order of its statements.</summary>
internal sealed class SqlResults(DbDataReader reader, SqlDialect dialect, CancellationToken cancellationToken)
{
    private bool _started;

    /// <summary>The rows of the next statement's result.</summary>
    public async Task<List<T>> NextAsync<T>(Func<SqlRow, T> read)
    {
        if (_started && !await reader.NextResultAsync(cancellationToken))
        {
            throw new InvalidOperationException("The command returned fewer result sets than were read.");
        }

        _started = true;
        var list = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(read(new SqlRow(reader, dialect)));
        }

        return list;
    }
}

/// <summary>One result row, read through the dialect.</summary>
internal readonly struct SqlRow(DbDataReader reader, SqlDialect dialect)
{
    public Guid Guid(int ordinal) => dialect.ReadGuid(reader, ordinal);

    public Guid? NullableGuid(int ordinal) => reader.IsDBNull(ordinal) ? null : dialect.ReadGuid(reader, ordinal);

    public DateTimeOffset Time(int ordinal) => dialect.ReadTime(reader, ordinal);

    public DateTimeOffset? NullableTime(int ordinal) => reader.IsDBNull(ordinal) ? null : dialect.ReadTime(reader, ordinal);

    public string String(int ordinal) => reader.GetString(ordinal);

    public string? NullableString(int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public long Long(int ordinal) => dialect.ReadLong(reader, ordinal);

    public long? NullableLong(int ordinal) => reader.IsDBNull(ordinal) ? null : Long(ordinal);

    public int Int(int ordinal) => checked((int)dialect.ReadLong(reader, ordinal));

    public T? Json<T>(int ordinal, JsonTypeInfo<T> typeInfo)
        where T : class =>
        reader.IsDBNull(ordinal) ? null : JsonSerializer.Deserialize(reader.GetString(ordinal), typeInfo);

    public const string MessageColumns =
        "m.id, m.conversation_id, m.seq, m.sender_id, m.message_type, m.content, m.reply_to_id, m.mentions, m.media, m.location, " +
        "m.client_message_id, m.created_at, m.edited_at, m.deleted_at";

    public const int MessageColumnCount = 14;

    public Message Message(int o = 0) => new(
        Guid(o),
        Guid(o + 1),
        Long(o + 2),
        String(o + 3),
        String(o + 4),
        NullableString(o + 5),
        NullableGuid(o + 6),
        Json(o + 7, StorageJsonContext.Default.IReadOnlyListMention),
        Json(o + 8, StorageJsonContext.Default.Media),
        Json(o + 9, StorageJsonContext.Default.Location),
        NullableString(o + 10),
        Time(o + 11),
        NullableTime(o + 12),
        NullableTime(o + 13));

    public const string VersionColumns = "version, content, mentions, created_at, replaced_at";

    public MessageVersion Version(int o = 0) =>
        new(Int(o), NullableString(o + 1), Json(o + 2, StorageJsonContext.Default.IReadOnlyListMention), Time(o + 3), Time(o + 4));

    public const string MemberColumns =
        "p.user_id, p.role, p.joined_seq, p.joined_at, p.read_seq, p.read_message_id, p.delivered_seq, p.delivered_message_id, " +
        "p.unread_count, p.last_activity_at";

    public const int MemberColumnCount = 10;

    public MemberRecord Member(int o = 0) => new(
        String(o),
        String(o + 1),
        Long(o + 2),
        Time(o + 3),
        Long(o + 4),
        NullableGuid(o + 5),
        Long(o + 6),
        NullableGuid(o + 7),
        Int(o + 8),
        Time(o + 9));

    public const string ConversationColumns = "c.id, c.type, c.name, c.created_by, c.created_at, c.last_activity_at, c.last_seq, c.last_message_id";

    public const int ConversationColumnCount = 8;

    public ConversationRecord Conversation(int o = 0) => new(
        Guid(o),
        String(o + 1),
        NullableString(o + 2),
        String(o + 3),
        Time(o + 4),
        Time(o + 5),
        Long(o + 6),
        NullableGuid(o + 7));
}

/// <summary>What runs ahead of a session's next command: the statement naming the transaction, then the conversation locks.</summary>
internal readonly record struct Prelude(bool Identify, Guid[]? Locks)
{
    public bool IsEmpty => !Identify && Locks is null;
}

/// <summary>A write transaction as the database names it (<see cref="SqlDialect.TransactionIdSql"/>): its id and the server process running it.</summary>
internal sealed record TransactionIdentity(string Id, int ServerProcess);

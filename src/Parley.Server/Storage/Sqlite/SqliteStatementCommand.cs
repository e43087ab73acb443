using System.Buffers;
using System.Buffers.Text;
using System.Collections;
using System.Data;
using System.Data.Common;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// A command of a kept SQLite connection's statement cache (<see cref="Sql.StatementCache"/>), run through SQLite's own
/// API instead of Microsoft.Data.Sqlite's: its statements are prepared once, each parameter's position in each of them
/// is looked up once, and a value is bound by position, a text without a copy on the heap (an id without a string at
/// all). Microsoft.Data.Sqlite looks every parameter up by name in every statement of the command on every execution,
/// with a UTF-8 copy of the name and of each value, and a binder and a parameter object each time: about 40 % of what
/// a message allocated (benchmarks.md, items 21 and 22). Results are read the same way (<see cref="SqliteStatementReader"/>).
/// <para>
/// Same behaviour as a <see cref="SqliteCommand"/> where the store relies on it: a value bound under a name the
/// statements do not use is ignored; a statement run with a parameter that has no value throws (values do not carry
/// over from one execution to the next: <see cref="ResetBindings"/>); a result is a statement that returns columns,
/// the statements between them run for their effects; a reader disposed early runs the statements it did not reach
/// (none after a statement that failed, which does not run again);
/// a busy database is retried until <see cref="CommandTimeout"/>; errors are <see cref="SqliteException"/>s.
/// Not thread-safe: one transaction at a time uses it.
/// </para>
/// </summary>
internal sealed class SqliteStatementCommand : DbCommand
{
    private static readonly TimeSpan BusyRetryDelay = TimeSpan.FromMilliseconds(10);

    private readonly SqliteConnection _connection;
    private readonly string _text;
    private readonly Dictionary<string, int> _slotsByName = new(StringComparer.Ordinal);
    private readonly List<string> _slotNames = [];
    private Statement[]? _statements;
    private Value[] _values = [];
    private bool _readerOpen;

    public SqliteStatementCommand(SqliteConnection connection, string text)
    {
        _connection = connection;
        _text = text;
        CommandTimeout = connection.DefaultTimeout;
    }

    [AllowNull]
    public override string CommandText
    {
        get => _text;
        set => throw new NotSupportedException("A cached statement keeps its text.");
    }

    public override int CommandTimeout { get; set; }

    public override CommandType CommandType { get; set; } = CommandType.Text;

    public override bool DesignTimeVisible { get; set; }

    public override UpdateRowSource UpdatedRowSource { get; set; }

    protected override DbConnection? DbConnection
    {
        get => _connection;
        set => throw new NotSupportedException("A cached statement keeps its connection.");
    }

    /// <summary>Values are bound through <see cref="BindText"/> and its siblings, never through parameter objects.</summary>
    protected override DbParameterCollection DbParameterCollection => throw new NotSupportedException("Bind through SqliteDialect.");

    protected override DbTransaction? DbTransaction { get; set; }

    private sqlite3 Database => _connection.Handle ?? throw new InvalidOperationException("The connection is closed.");

    /// <summary>Forgets the values of the last execution: each must be bound again.</summary>
    public void ResetBindings() => Array.Clear(_values);

    public void BindText(string name, string? value)
    {
        if (Slot(name) is { } slot)
        {
            _values[slot] = value is null ? Value.Null : new Value(ValueKind.Text, 0, value, default);
        }
    }

    public void BindLong(string name, long? value)
    {
        if (Slot(name) is { } slot)
        {
            _values[slot] = value is null ? Value.Null : new Value(ValueKind.Integer, value.Value, null, default);
        }
    }

    /// <summary>An id, bound as its canonical lower-case text (formatted on the stack).</summary>
    public void BindGuid(string name, Guid? value)
    {
        if (Slot(name) is { } slot)
        {
            _values[slot] = value is null ? Value.Null : new Value(ValueKind.Guid, 0, null, value.Value);
        }
    }

    public override void Cancel()
    {
        // Statements here are short and run on the caller's thread; there is nothing to interrupt from another.
    }

    public override void Prepare() => Prepared();

    protected override DbParameter CreateDbParameter() => throw new NotSupportedException("Bind through SqliteDialect.");

    public override int ExecuteNonQuery()
    {
        using var reader = ExecuteReader();
        while (reader.NextResult())
        {
        }

        return reader.RecordsAffected;
    }

    public override object? ExecuteScalar()
    {
        using var reader = ExecuteReader();
        return reader.Read() ? reader.GetValue(0) : null;
    }

    protected override DbDataReader ExecuteDbDataReader(CommandBehavior behavior)
    {
        if (_readerOpen)
        {
            throw new InvalidOperationException("The command's reader is still open.");
        }

        var statements = Prepared();
        foreach (var statement in statements)
        {
            Bind(statement);
        }

        _readerOpen = true;
        var reader = new SqliteStatementReader(this, statements);
        try
        {
            reader.Start();
            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    protected override Task<DbDataReader> ExecuteDbDataReaderAsync(CommandBehavior behavior, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(ExecuteDbDataReader(behavior));
    }

    /// <summary>
    /// Steps <paramref name="statement"/> once: true for a row, false when it is done; any other outcome throws. Its
    /// <paramref name="first"/> step is retried while the database is busy (until <see cref="CommandTimeout"/>), as
    /// Microsoft.Data.Sqlite does; a later one is not (starting over would return its rows again).
    /// </summary>
    internal bool Step(sqlite3_stmt statement, bool first)
    {
        var db = Database;
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            var rc = raw.sqlite3_step(statement);
            switch (rc)
            {
                case raw.SQLITE_ROW:
                    return true;
                case raw.SQLITE_DONE:
                    return false;
                case var busy when first && (busy & 0xFF) is raw.SQLITE_BUSY or raw.SQLITE_LOCKED
                    && (CommandTimeout == 0 || Stopwatch.GetElapsedTime(started).TotalSeconds < CommandTimeout):
                    raw.sqlite3_reset(statement);
                    Thread.Sleep(BusyRetryDelay);
                    continue;
                default:
                    raw.sqlite3_reset(statement);
                    SqliteException.ThrowExceptionForRC(rc, db);
                    throw new InvalidOperationException($"SQLite returned {rc}.");
            }
        }
    }

    /// <summary>Rows changed by the statement that just finished (none for a statement that only reads).</summary>
    internal int Changes(sqlite3_stmt statement) =>
        raw.sqlite3_stmt_readonly(statement) != 0 ? 0 : raw.sqlite3_changes(Database);

    internal void ReaderClosed(Statement[] statements)
    {
        foreach (var statement in statements)
        {
            raw.sqlite3_reset(statement.Handle);
        }

        _readerOpen = false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && _statements is not null)
        {
            foreach (var statement in _statements)
            {
                statement.Handle.Dispose();
            }

            _statements = null;
        }

        base.Dispose(disposing);
    }

    private int? Slot(string name)
    {
        Prepared();
        return _slotsByName.TryGetValue(name, out var slot) ? slot : null;
    }

    /// <summary>Prepares the statements of the text (once), and numbers the parameter names they use.</summary>
    private Statement[] Prepared()
    {
        if (_statements is not null)
        {
            return _statements;
        }

        var db = Database;
        var statements = new List<Statement>();
        var rest = _text;
        try
        {
            while (!string.IsNullOrWhiteSpace(rest))
            {
                var rc = raw.sqlite3_prepare_v3(db, rest, raw.SQLITE_PREPARE_PERSISTENT, out var handle, out var tail);
                if (rc != raw.SQLITE_OK)
                {
                    handle?.Dispose();
                    SqliteException.ThrowExceptionForRC(rc, db);
                }

                rest = tail;
                if (handle is null || handle.IsInvalid)
                {
                    // Only a comment or white space was left.
                    handle?.Dispose();
                    continue;
                }

                var count = raw.sqlite3_bind_parameter_count(handle);
                var slots = new int[count];
                for (var i = 0; i < count; i++)
                {
                    var name = raw.sqlite3_bind_parameter_name(handle, i + 1).utf8_to_string()
                        ?? throw new NotSupportedException("Parley's statements name every parameter.");
                    if (!_slotsByName.TryGetValue(name, out var slot))
                    {
                        slot = _slotNames.Count;
                        _slotNames.Add(name);
                        _slotsByName[name] = slot;
                    }

                    slots[i] = slot;
                }

                statements.Add(new Statement(handle, slots, raw.sqlite3_column_count(handle)));
            }
        }
        catch
        {
            foreach (var statement in statements)
            {
                statement.Handle.Dispose();
            }

            _slotsByName.Clear();
            _slotNames.Clear();
            throw;
        }

        _values = new Value[_slotNames.Count];
        return _statements = [.. statements];
    }

    private void Bind(Statement statement)
    {
        var handle = statement.Handle;
        for (var i = 0; i < statement.Slots.Length; i++)
        {
            var value = _values[statement.Slots[i]];
            var rc = value.Kind switch
            {
                ValueKind.Null => raw.sqlite3_bind_null(handle, i + 1),
                ValueKind.Integer => raw.sqlite3_bind_int64(handle, i + 1, value.Integer),
                ValueKind.Text => BindUtf8(handle, i + 1, value.Text!),
                ValueKind.Guid => BindGuid(handle, i + 1, value.Guid),
                _ => throw new InvalidOperationException($"Must add values for the following parameters: {_slotNames[statement.Slots[i]]}"),
            };
            if (rc != raw.SQLITE_OK)
            {
                SqliteException.ThrowExceptionForRC(rc, Database);
            }
        }
    }

    private static int BindUtf8(sqlite3_stmt handle, int index, string text)
    {
        var length = Encoding.UTF8.GetMaxByteCount(text.Length);
        if (length <= 512)
        {
            Span<byte> buffer = stackalloc byte[512];
            var written = Encoding.UTF8.GetBytes(text, buffer);
            return raw.sqlite3_bind_text(handle, index, buffer[..written]);
        }

        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var written = Encoding.UTF8.GetBytes(text, rented);
            return raw.sqlite3_bind_text(handle, index, rented.AsSpan(0, written));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static int BindGuid(sqlite3_stmt handle, int index, Guid value)
    {
        Span<byte> buffer = stackalloc byte[36];
        value.TryFormat(buffer, out var written, "D");
        return raw.sqlite3_bind_text(handle, index, buffer[..written]);
    }

    internal sealed record Statement(sqlite3_stmt Handle, int[] Slots, int ColumnCount);

    private enum ValueKind : byte
    {
        Unset,
        Null,
        Integer,
        Text,
        Guid,
    }

    private readonly record struct Value(ValueKind Kind, long Integer, string? Text, Guid Guid)
    {
        public static readonly Value Null = new(ValueKind.Null, 0, null, default);
    }

    /// <summary>Parses an id written as canonical text without making a string of it.</summary>
    internal static Guid ParseGuid(ReadOnlySpan<byte> utf8) =>
        Utf8Parser.TryParse(utf8, out Guid value, out var consumed, 'D') && consumed == utf8.Length
            ? value
            : throw new FormatException("A stored id is not a UUID.");
}

/// <summary>
/// The results of a <see cref="SqliteStatementCommand"/>: one per statement that returns columns, in order; the
/// statements before, between and after them run for their effects (when the reader moves past them, or is disposed).
/// </summary>
internal sealed class SqliteStatementReader : DbDataReader
{
    private readonly SqliteStatementCommand _command;
    private readonly SqliteStatementCommand.Statement[] _statements;
    private int _current = -1; // the statement whose result is read
    private bool _pendingRow;  // its first row was stepped to by NextResult, not yet handed out by Read
    private bool _onRow;
    private bool _done;        // the current statement has no more rows
    private int _changes;
    private bool _closed;
    private bool _failed;      // a statement failed: none after it runs, and it does not run again

    public SqliteStatementReader(SqliteStatementCommand command, SqliteStatementCommand.Statement[] statements)
    {
        _command = command;
        _statements = statements;
    }

    /// <summary>Runs up to the first statement that returns columns.</summary>
    internal void Start()
    {
        try
        {
            MoveToResult(0);
        }
        catch
        {
            Fail();
            throw;
        }
    }

    public override int FieldCount => _current < _statements.Length && _current >= 0 ? _statements[_current].ColumnCount : 0;

    public override bool HasRows => _pendingRow || _onRow;

    public override bool IsClosed => _closed;

    public override int RecordsAffected => _changes;

    public override int Depth => 0;

    public override object this[int ordinal] => GetValue(ordinal);

    public override object this[string name] => GetValue(GetOrdinal(name));

    public override bool Read()
    {
        if (_failed || _current >= _statements.Length || _done)
        {
            _onRow = false;
            return false;
        }

        if (_pendingRow)
        {
            _pendingRow = false;
            _onRow = true;
            return true;
        }

        var handle = _statements[_current].Handle;
        try
        {
            _onRow = _command.Step(handle, first: false);
        }
        catch
        {
            Fail();
            throw;
        }

        if (!_onRow)
        {
            Finished(handle);
        }

        return _onRow;
    }

    public override Task<bool> ReadAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Read() ? TrueTask : FalseTask;
    }

    public override bool NextResult()
    {
        if (_failed)
        {
            return false;
        }

        try
        {
            return NextResultCore();
        }
        catch
        {
            Fail();
            throw;
        }
    }

    private bool NextResultCore()
    {
        if (_current >= _statements.Length)
        {
            return false;
        }

        // What is left of the current result is not read. A statement that writes has made its changes by its first step
        // (RETURNING rows are computed then): it is stepped to its end so that they are counted; one that reads stops here.
        if (!_done)
        {
            var handle = _statements[_current].Handle;
            if (raw.sqlite3_stmt_readonly(handle) == 0)
            {
                while (_command.Step(handle, first: false))
                {
                }

                Finished(handle);
            }
            else
            {
                raw.sqlite3_reset(handle);
            }
        }

        return MoveToResult(_current + 1);
    }

    public override Task<bool> NextResultAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return NextResult() ? TrueTask : FalseTask;
    }

    public override bool IsDBNull(int ordinal) => raw.sqlite3_column_type(Row, ordinal) == raw.SQLITE_NULL;

    public override long GetInt64(int ordinal) => raw.sqlite3_column_int64(Row, ordinal);

    public override int GetInt32(int ordinal) => checked((int)raw.sqlite3_column_int64(Row, ordinal));

    public override string GetString(int ordinal) =>
        raw.sqlite3_column_text(Row, ordinal).utf8_to_string()
        ?? throw new InvalidCastException("The column is NULL.");

    /// <summary>An id stored as canonical text, parsed from SQLite's own bytes.</summary>
    public Guid GetIdFromText(int ordinal) => SqliteStatementCommand.ParseGuid(raw.sqlite3_column_blob(Row, ordinal));

    public override object GetValue(int ordinal) => raw.sqlite3_column_type(Row, ordinal) switch
    {
        raw.SQLITE_INTEGER => raw.sqlite3_column_int64(Row, ordinal),
        raw.SQLITE_FLOAT => raw.sqlite3_column_double(Row, ordinal),
        raw.SQLITE_TEXT => GetString(ordinal),
        raw.SQLITE_BLOB => raw.sqlite3_column_blob(Row, ordinal).ToArray(),
        _ => DBNull.Value,
    };

    public override int GetValues(object[] values)
    {
        var count = Math.Min(values.Length, FieldCount);
        for (var i = 0; i < count; i++)
        {
            values[i] = GetValue(i);
        }

        return count;
    }

    public override string GetName(int ordinal) =>
        raw.sqlite3_column_name(_statements[_current].Handle, ordinal).utf8_to_string() ?? string.Empty;

    public override int GetOrdinal(string name)
    {
        for (var i = 0; i < FieldCount; i++)
        {
            if (string.Equals(GetName(i), name, StringComparison.OrdinalIgnoreCase))
            {
                return i;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(name), name, "No column has this name.");
    }

    public override bool GetBoolean(int ordinal) => GetInt64(ordinal) != 0;

    public override byte GetByte(int ordinal) => checked((byte)GetInt64(ordinal));

    public override short GetInt16(int ordinal) => checked((short)GetInt64(ordinal));

    public override double GetDouble(int ordinal) => raw.sqlite3_column_double(Row, ordinal);

    public override float GetFloat(int ordinal) => (float)GetDouble(ordinal);

    public override decimal GetDecimal(int ordinal) => (decimal)GetDouble(ordinal);

    public override char GetChar(int ordinal) => GetString(ordinal)[0];

    public override DateTime GetDateTime(int ordinal) => throw new NotSupportedException("Parley stores times as Unix milliseconds.");

    public override Guid GetGuid(int ordinal) => GetIdFromText(ordinal);

    public override string GetDataTypeName(int ordinal) => raw.sqlite3_column_decltype(_statements[_current].Handle, ordinal).utf8_to_string() ?? "BLOB";

    public override Type GetFieldType(int ordinal) => raw.sqlite3_column_type(Row, ordinal) switch
    {
        raw.SQLITE_INTEGER => typeof(long),
        raw.SQLITE_FLOAT => typeof(double),
        raw.SQLITE_TEXT => typeof(string),
        _ => typeof(byte[]),
    };

    public override long GetBytes(int ordinal, long dataOffset, byte[]? buffer, int bufferOffset, int length) =>
        throw new NotSupportedException();

    public override long GetChars(int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length) =>
        throw new NotSupportedException();

    public override IEnumerator GetEnumerator() => new DbEnumerator(this, closeReader: false);

    public override void Close()
    {
        if (_closed)
        {
            return;
        }

        _closed = true;
        try
        {
            // Like Microsoft.Data.Sqlite's reader: the statements not reached still run (none after a failed one).
            while (NextResult())
            {
            }
        }
        finally
        {
            _command.ReaderClosed(_statements);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Close();
        }

        base.Dispose(disposing);
    }

    private static readonly Task<bool> TrueTask = Task.FromResult(true);
    private static readonly Task<bool> FalseTask = Task.FromResult(false);

    /// <summary>A statement failed (and was reset): the reader reads nothing more, and closing it runs nothing more.</summary>
    private void Fail()
    {
        _failed = true;
        _onRow = false;
        _pendingRow = false;
    }

    private sqlite3_stmt Row => _onRow
        ? _statements[_current].Handle
        : throw new InvalidOperationException("No row is being read.");

    /// <summary>
    /// Runs statements from <paramref name="index"/> on: those without columns to completion, stopping at the first
    /// that returns columns (its first row, if any, stepped to). False when none is left.
    /// </summary>
    private bool MoveToResult(int index)
    {
        _onRow = false;
        _pendingRow = false;
        for (_current = index; _current < _statements.Length; _current++)
        {
            var statement = _statements[_current];
            _done = false;
            var row = _command.Step(statement.Handle, first: true);
            if (statement.ColumnCount > 0)
            {
                _pendingRow = row;
                if (!row)
                {
                    Finished(statement.Handle);
                }

                return true;
            }

            while (row)
            {
                row = _command.Step(statement.Handle, first: false);
            }

            Finished(statement.Handle);
        }

        return false;
    }

    private void Finished(sqlite3_stmt handle)
    {
        _done = true;
        _changes += _command.Changes(handle);
        raw.sqlite3_reset(handle);
    }
}

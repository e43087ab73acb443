using System.Data.Common;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// What differs between the SQL databases Parley runs on: how ids and timestamps are bound and read, how a
/// write transaction starts, and how a conversation is locked for the rest of a transaction. The queries
/// themselves are shared (<see cref="SqlChatStore"/>).
/// </summary>
internal abstract class SqlDialect
{
    /// <summary>The folder of this database's migration scripts (Storage/Migrations/&lt;Provider&gt;).</summary>
    public abstract string Provider { get; }

    public abstract void BindGuid(DbCommand command, string name, Guid? value);

    /// <summary>Timestamps are stored with millisecond precision in every store (cursors and JSON carry milliseconds).</summary>
    public abstract void BindTime(DbCommand command, string name, DateTimeOffset? value);

    public abstract void BindText(DbCommand command, string name, string? value);

    public abstract void BindLong(DbCommand command, string name, long? value);

    /// <summary>
    /// How many rows a statement built for a list of <paramref name="rows"/> rows carries; the rest are rows of NULLs,
    /// which the statements that pad are written to ignore (a NULL key matches no row). PostgreSQL plans a statement anew
    /// unless it ran the same text a few times before on that connection (Npgsql then prepares it), so lists of every
    /// length were planned on every use: it gets a few lengths (powers of two up to 128). SQLite keeps the length.
    /// </summary>
    public virtual int PaddedRows(int rows) => rows;

    public abstract Guid ReadGuid(DbDataReader reader, int ordinal);

    public abstract DateTimeOffset ReadTime(DbDataReader reader, int ordinal);

    /// <summary>An integer column, whatever its width in this database.</summary>
    public virtual long ReadLong(DbDataReader reader, int ordinal) =>
        Convert.ToInt64(reader.GetValue(ordinal), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// SQL that locks <paramref name="count"/> conversations, bound as <c>@lk0</c>, <c>@lk1</c>, ... in
    /// <see cref="LockOrder"/>, until commit: every transaction that locks several takes them in that one order, so
    /// none deadlock (empty when the transaction already excludes every other writer).
    /// </summary>
    public virtual string LockConversationsSql(int count) => string.Empty;

    /// <summary>
    /// A statement that names the current write transaction (one row: its id as text, and the server process running
    /// it), so that a COMMIT whose answer was lost can be settled afterwards (<see cref="SqlChatStore.SettleCommitAsync"/>);
    /// null where the database cannot be asked about a transaction after its connection broke.
    /// </summary>
    public virtual string? TransactionIdSql => null;

    /// <summary>
    /// Whether commands run as batches of statements with positional parameters (<see cref="PositionalSql"/>), their
    /// values bound by name and copied with <see cref="PositionalCopy"/>: saves the provider parsing every command.
    /// </summary>
    public virtual bool BindsByPosition => false;

    /// <summary>An unnamed copy of a bound parameter (type and value), for a positional statement.</summary>
    public virtual DbParameter PositionalCopy(DbParameter parameter) =>
        throw new NotSupportedException($"{Provider} binds by name.");

    /// <summary>
    /// Whether one statement may carry several writes (PostgreSQL's data-modifying <c>WITH</c>): where every statement
    /// costs a bind, an executor start and a snapshot, a send's writes go as one.
    /// </summary>
    public virtual bool WritesInOneStatement => false;

    /// <summary>
    /// Whether write transactions lock their conversations (<see cref="LockConversationsSql"/>) at all; where they do,
    /// a read may take the lock itself with <c>FOR UPDATE</c>.
    /// </summary>
    public bool LocksConversations => LockConversationsSql(1).Length > 0;

    /// <summary>The name of the <paramref name="index"/>th conversation in <see cref="LockConversationsSql"/>.</summary>
    // A prefix no statement of the stores uses, so that the locks can share a command with any statement.
    public static string LockParameter(int index) => ListParameter("lk", index);

    /// <summary>
    /// The name of parameter <paramref name="prefix"/> in row <paramref name="index"/> of a generated list
    /// (<c>@c0</c>, <c>@c1</c>, ...): made once per prefix for the first rows, which a busy server binds in every batch.
    /// </summary>
    public static string ListParameter(string prefix, int index) =>
        index < CachedListNames
            ? ListNames.GetOrAdd(prefix, static p => Enumerable.Range(0, CachedListNames).Select(i => $"@{p}{i}").ToArray())[index]
            : $"@{prefix}{index}";

    private const int CachedListNames = 256;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string[]> ListNames = new(StringComparer.Ordinal);

    /// <summary>
    /// The order in which conversations are locked: the database's own order of uuids (bytes compared in their
    /// written order), so a lock taken by the database's <c>ORDER BY id</c> elsewhere agrees with it.
    /// </summary>
    public static readonly IComparer<Guid> LockOrder = Comparer<Guid>.Create(static (a, b) =>
    {
        Span<byte> x = stackalloc byte[16];
        Span<byte> y = stackalloc byte[16];
        a.TryWriteBytes(x, bigEndian: true, out _);
        b.TryWriteBytes(y, bigEndian: true, out _);
        return x.SequenceCompareTo(y);
    });

    /// <summary>Creates the migration ledger, <c>schema_migrations</c>, when it does not exist yet.</summary>
    public abstract string CreateMigrationLedgerSql { get; }

    /// <summary>
    /// Run first in the sequencer's transaction; answers true when this transaction may assign positions
    /// (PostgreSQL: a transaction-scoped advisory lock, so one instance at a time).
    /// </summary>
    public abstract string SequencerLockSql { get; }

    /// <summary>
    /// Run before <see cref="SequencerLockSql"/> where the sequencer's statements must share one snapshot (null where
    /// commits come one at a time and nothing is sequenced after commit).
    /// </summary>
    public virtual string? SequencerSnapshotSql => null;

    /// <summary>
    /// How many parameters one statement should carry at most; batches of rows (multi-row VALUES lists, IN lists) are
    /// split to stay within it. SQLite looks each parameter up by name in a list it scans from the start, so binding a
    /// statement costs the square of its parameters: at 2,000 messages/s on 2 cores, 2.8 % of the server's CPU went to
    /// that scan with statements of up to 750 parameters. PostgreSQL binds by position and pays a round trip per
    /// statement: no limit there beyond each caller's own.
    /// </summary>
    public virtual int ParameterBudget => int.MaxValue;

    /// <summary>
    /// True when write transactions commit one at a time, so whatever a transaction takes in order grows in commit
    /// order (SQLite): an autoincrement id serves as the receipt log's stream position, and an event takes the stream's
    /// next position as it is inserted. Otherwise (PostgreSQL: ids and counters are
    /// taken before commit, and transactions commit in any order) the sequencer numbers committed rows after commit.
    /// </summary>
    public virtual bool IdsGrowInCommitOrder => false;

    /// <summary>
    /// Whether a subquery in <c>FROM</c> may read the columns of the rows before it (<c>LATERAL</c>, PostgreSQL). Where
    /// it may, a statement over a list of reports reads each report's own index range in a nested loop; joined plainly,
    /// PostgreSQL may instead hash a whole table (every message of the conversations, or of all of them) and filter
    /// the ranges after. SQLite has no <c>LATERAL</c>, and joins a <c>VALUES</c> list in nested loops by itself.
    /// </summary>
    public virtual bool JoinsLaterally => false;

    /// <summary>Rows per statement for a batch of rows with <paramref name="parametersPerRow"/> parameters each, at most <paramref name="rows"/>.</summary>
    public int RowsPerStatement(int rows, int parametersPerRow) => Math.Clamp(ParameterBudget / parametersPerRow, 1, rows);

    protected static DateTimeOffset Milliseconds(DateTimeOffset value) =>
        DateTimeOffset.FromUnixTimeMilliseconds(value.ToUnixTimeMilliseconds());
}

using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Data.Sqlite;
using Parley.Server.Hosting;
using Parley.Server.Messages;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// How values are kept in SQLite: ids as canonical lower-case UUID text, timestamps as Unix milliseconds,
/// structured parts of a message (mentions, media, location) as JSON text.
/// </summary>
internal static class SqliteCommands
{
    public static SqliteCommand Command(this SqliteConnection connection, string sql, SqliteTransaction? transaction = null)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        return command;
    }

    public static SqliteCommand With(this SqliteCommand command, string name, string? value)
    {
        command.Parameters.AddWithValue(name, (object?)value ?? DBNull.Value);
        return command;
    }

    public static SqliteCommand With(this SqliteCommand command, string name, long value)
    {
        command.Parameters.AddWithValue(name, value);
        return command;
    }

    public static SqliteCommand With(this SqliteCommand command, string name, Guid value) =>
        command.With(name, value.ToString("D"));

    public static SqliteCommand With(this SqliteCommand command, string name, Guid? value) =>
        command.With(name, value?.ToString("D"));

    public static SqliteCommand With(this SqliteCommand command, string name, DateTimeOffset value) =>
        command.With(name, value.ToUnixTimeMilliseconds());

    public static SqliteCommand With(this SqliteCommand command, string name, DateTimeOffset? value)
    {
        command.Parameters.AddWithValue(name, value is null ? DBNull.Value : value.Value.ToUnixTimeMilliseconds());
        return command;
    }

    public static SqliteCommand WithJson<T>(this SqliteCommand command, string name, T? value, JsonTypeInfo<T> typeInfo)
        where T : class =>
        command.With(name, value is null ? null : JsonSerializer.Serialize(value, typeInfo));

    public static Guid GetGuid(this SqliteDataReader reader, int ordinal) => Guid.Parse(reader.GetString(ordinal));

    public static Guid? GetNullableGuid(this SqliteDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : Guid.Parse(reader.GetString(ordinal));

    public static DateTimeOffset GetTime(this SqliteDataReader reader, int ordinal) =>
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    public static DateTimeOffset? GetNullableTime(this SqliteDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    public static string? GetNullableString(this SqliteDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public static T? GetJson<T>(this SqliteDataReader reader, int ordinal, JsonTypeInfo<T> typeInfo)
        where T : class =>
        reader.IsDBNull(ordinal) ? null : JsonSerializer.Deserialize(reader.GetString(ordinal), typeInfo);

    public const string MessageColumns =
        "m.id, m.conversation_id, m.seq, m.sender_id, m.message_type, m.content, m.reply_to_id, m.mentions, m.media, m.location, " +
        "m.client_message_id, m.created_at, m.edited_at, m.deleted_at";

    public const int MessageColumnCount = 14;

    public static Message ReadMessage(this SqliteDataReader r, int o = 0) => new(
        r.GetGuid(o),
        r.GetGuid(o + 1),
        r.GetInt64(o + 2),
        r.GetString(o + 3),
        r.GetString(o + 4),
        r.GetNullableString(o + 5),
        r.GetNullableGuid(o + 6),
        r.GetJson(o + 7, ParleyJsonContext.Default.IReadOnlyListMention),
        r.GetJson(o + 8, ParleyJsonContext.Default.Media),
        r.GetJson(o + 9, ParleyJsonContext.Default.Location),
        r.GetNullableString(o + 10),
        r.GetTime(o + 11),
        r.GetNullableTime(o + 12),
        r.GetNullableTime(o + 13));

    public const string MemberColumns =
        "p.user_id, p.role, p.joined_seq, p.joined_at, p.read_seq, p.read_message_id, p.delivered_seq, p.delivered_message_id, " +
        "p.unread_count, p.last_activity_at";

    public const int MemberColumnCount = 10;

    public static MemberRecord ReadMember(this SqliteDataReader r, int o = 0) => new(
        r.GetString(o),
        r.GetString(o + 1),
        r.GetInt64(o + 2),
        r.GetTime(o + 3),
        r.GetInt64(o + 4),
        r.GetNullableGuid(o + 5),
        r.GetInt64(o + 6),
        r.GetNullableGuid(o + 7),
        r.GetInt32(o + 8),
        r.GetTime(o + 9));

    public const string ConversationColumns = "c.id, c.type, c.name, c.created_by, c.created_at, c.last_activity_at, c.last_seq, c.last_message_id";

    public const int ConversationColumnCount = 8;

    public static ConversationRecord ReadConversation(this SqliteDataReader r, int o = 0) => new(
        r.GetGuid(o),
        r.GetString(o + 1),
        r.GetNullableString(o + 2),
        r.GetString(o + 3),
        r.GetTime(o + 4),
        r.GetTime(o + 5),
        r.GetInt64(o + 6),
        r.GetNullableGuid(o + 7));

    public static async Task<List<T>> ListAsync<T>(this SqliteCommand command, Func<SqliteDataReader, T> read, CancellationToken cancellationToken)
    {
        var list = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(read(reader));
        }

        return list;
    }

    public static async Task<T?> FirstOrDefaultAsync<T>(this SqliteCommand command, Func<SqliteDataReader, T> read, CancellationToken cancellationToken)
        where T : class
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? read(reader) : null;
    }
}

using System.Data.Common;
using System.Net;
using Microsoft.Data.Sqlite;
using Npgsql;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// A storage error that escapes a feature is 503 service_unavailable (with Retry-After) only when waiting fixes it;
/// a value the database refuses as data is 400 and any other database error 500, over REST and the socket alike.
/// Reproduction: every DbException was 503, so PostgreSQL's refusal of U+0000 (SQLSTATE 22021) told clients to retry
/// a request that could never succeed. The end-to-end tests make the suite's own store refuse a message with a trigger.
/// </summary>
public sealed class StorageFailureTests : IAsyncLifetime
{
    private const string RefusedAsData = "refused as data";
    private const string RefusedAsIntegrity = "refused as integrity";

    private readonly ParleyFactory _factory = new();

    public async ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        await InstallRefusingTriggerAsync();
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    public static TheoryData<string, string> PostgresStates => new()
    {
        { "08006", "Unavailable" },  // connection failure
        { "53300", "Unavailable" },  // too many connections
        { "57P01", "Unavailable" },  // admin shutdown
        { "57014", "Unavailable" },  // statement timeout
        { "40001", "Unavailable" },  // serialization failure
        { "40P01", "Unavailable" },  // deadlock
        { "22021", "RefusedValue" }, // U+0000 in text
        { "22001", "RefusedValue" }, // string too long
        { "23505", "Fault" },        // unique violation
        { "23503", "Fault" },        // foreign key violation
        { "42P01", "Fault" },        // undefined table
        { "XX000", "Fault" },        // internal error
    };

    [Theory]
    [MemberData(nameof(PostgresStates))]
    public void Classify_PostgresSqlState(string sqlState, string expected) =>
        Assert.Equal(expected, StorageErrors.Classify(new PostgresException("test", "ERROR", "ERROR", sqlState)).ToString());

    [Theory]
    [InlineData(5, "Unavailable")]  // busy
    [InlineData(13, "Unavailable")] // disk full
    [InlineData(10, "Unavailable")] // I/O error
    [InlineData(18, "RefusedValue")] // too big
    [InlineData(19, "Fault")]       // constraint
    [InlineData(1, "Fault")]        // SQL error
    public void Classify_SqliteErrorCode(int code, string expected) =>
        Assert.Equal(expected, StorageErrors.Classify(new SqliteException("test", code)).ToString());

    [Fact]
    public void Classify_NoAnswerFromTheServer_IsUnavailable() =>
        Assert.Equal(StorageFailure.Unavailable, StorageErrors.Classify(new NpgsqlException("connection refused", new System.Net.Sockets.SocketException())));

    [Fact]
    public async Task Send_StorageRefusesAValueAsData_Returns400WithoutRetryAfter()
    {
        Assert.SkipUnless(TestPostgres.Selected, "PostgreSQL's data exceptions (SQLSTATE class 22): the suite runs on SQLite.");
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        using var response = await api.PostAsync("/api/v1/messages", new { conversation_id = conversation.Id, message_type = "text", content = RefusedAsData });

        var problem = await ParleyApi.ProblemAsync(response, HttpStatusCode.BadRequest, "invalid_request");
        // Which database refused it, and how, is for the log, not for the client.
        Assert.DoesNotContain("22023", problem.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("SQLSTATE", problem.Detail, StringComparison.Ordinal);
        Assert.Null(response.Headers.RetryAfter);
    }

    [Fact]
    public async Task Send_StorageIntegrityError_Returns500WithoutRetryAfter()
    {
        using var api = _factory.Api(NewUser("alice"));
        var conversation = await api.CreateDirectAsync(NewUser("bob"));

        using var response = await api.PostAsync("/api/v1/messages", new { conversation_id = conversation.Id, message_type = "text", content = RefusedAsIntegrity });

        await ParleyApi.ProblemAsync(response, HttpStatusCode.InternalServerError, "internal_error");
        Assert.Null(response.Headers.RetryAfter);
        Assert.Empty((await api.ListMessagesAsync(conversation.Id)).Messages);
    }

    [Fact]
    public async Task SendOverSocket_StorageErrors_AreNotServiceUnavailable()
    {
        var alice = NewUser("alice");
        using var api = _factory.Api(alice);
        var conversation = await api.CreateDirectAsync(NewUser("bob"));
        await using var socket = await WsClient.ConnectAsync(_factory, alice);

        await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = RefusedAsIntegrity, client_message_id = "i-1" });
        var integrity = await socket.NextAsync("error");
        Assert.Equal("internal_error", integrity.GetProperty("code").GetString());
        Assert.Equal("i-1", integrity.GetProperty("client_message_id").GetString()); // which send failed
        if (TestPostgres.Selected)
        {
            await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = RefusedAsData, client_message_id = "d-1" });
            var data = await socket.NextAsync("error");
            Assert.Equal("invalid_request", data.GetProperty("code").GetString());
            Assert.Equal("d-1", data.GetProperty("client_message_id").GetString());
        }

        // The connection carries on.
        await socket.SendAsync("send_message", new { conversation_id = conversation.Id, message_type = "text", content = "fine", client_message_id = "ok-1" });
        await socket.NextAsync("message_ack");
    }

    /// <summary>A trigger on the store under test that refuses two contents the way a real data or integrity error would.</summary>
    private async Task InstallRefusingTriggerAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        DbConnection connection = TestPostgres.Selected
            ? new NpgsqlConnection(_factory.StorageSettings()["ConnectionStrings:Postgres"])
            : new SqliteConnection($"Data Source={_factory.DatabasePath}");
        await using (connection)
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = TestPostgres.Selected
                ? $$"""
                  CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
                  BEGIN
                    IF NEW.content = '{{RefusedAsData}}' THEN RAISE EXCEPTION 'test: refused as data' USING ERRCODE = '22023'; END IF;
                    IF NEW.content = '{{RefusedAsIntegrity}}' THEN RAISE EXCEPTION 'test: refused' USING ERRCODE = '23514'; END IF;
                    RETURN NEW;
                  END $f$;
                  CREATE TRIGGER test_refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION test_refuse();
                  """
                : $"""
                  CREATE TRIGGER test_refuse BEFORE INSERT ON messages WHEN NEW.content = '{RefusedAsIntegrity}'
                  BEGIN SELECT RAISE(ABORT, 'test: refused'); END;
                  """;
            await command.ExecuteNonQueryAsync(ct);
        }
    }
}

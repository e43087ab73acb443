using System.Text.Json;
using Json.Schema;
using Parley.Server.Events;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>Reading published records in tests: their JSON, waiting for them, and checking them against the published schemas.</summary>
internal static class EventRecords
{
    private static readonly Dictionary<string, JsonSchema> Schemas = Directory
        .GetFiles(Path.Combine(SourceFacts.RepositoryRoot(), "docs", "events", "schemas"), "*.json")
        .ToDictionary(path => Path.GetFileNameWithoutExtension(path), path => JsonSchema.FromText(File.ReadAllText(path)));

    public static IReadOnlyCollection<string> SchemaTypes => Schemas.Keys;

    public static JsonElement Json(this EventRecord record) => JsonDocument.Parse(record.Body).RootElement.Clone();

    public static JsonElement Payload(this EventRecord record) => record.Json().GetProperty("payload");

    public static long Seq(this EventRecord record) => record.Json().GetProperty("seq").GetInt64();

    /// <summary>Fails with the evaluation's errors unless the record matches the schema of its type.</summary>
    public static void AssertMatchesSchema(byte[] body)
    {
        using var document = JsonDocument.Parse(body);
        var type = document.RootElement.GetProperty("type").GetString()!;
        Assert.True(Schemas.TryGetValue(type, out var schema), $"No schema for record type {type}");
        var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(
            result.IsValid,
            $"{type} does not match its schema: {JsonSerializer.Serialize(result)}{Environment.NewLine}{System.Text.Encoding.UTF8.GetString(body)}");
    }

    /// <summary>Waits until <paramref name="done"/> holds for the sink's records (at most <paramref name="timeout"/>, 20 s by default).</summary>
    public static async Task<IReadOnlyList<EventRecord>> WaitForAsync(
        this InMemoryEventSink sink, Func<IReadOnlyList<EventRecord>, bool> done, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var records = sink.Records;
            if (done(records))
            {
                return records;
            }

            if (DateTime.UtcNow > until)
            {
                Assert.Fail($"Timed out waiting for records; have {records.Count}: {string.Join(", ", records.Select(r => r.Type))}");
            }

            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>Records of one conversation on the events topic.</summary>
    public static List<EventRecord> Of(this IEnumerable<EventRecord> records, Guid conversationId) =>
        [.. records.Where(r => r.Topic == EventTopic.Events && r.Key == conversationId.ToString())];
}

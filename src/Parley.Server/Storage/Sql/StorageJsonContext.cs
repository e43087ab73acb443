using System.Text.Json;
using System.Text.Json.Serialization;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The JSON the store writes into its columns (mentions, media, location, a conversation's initial roster),
/// source-generated. These are stored formats: rows written by one version are read by every later one, so the
/// options and names here change only together with a migration of the rows already written. They match the
/// API's JSON (snake_case names, nulls written) by choice, not by sharing its context.
/// </summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(IReadOnlyList<Mention>))]
[JsonSerializable(typeof(Media))]
[JsonSerializable(typeof(Location))]
[JsonSerializable(typeof(IReadOnlyList<RosterEntry>))]
internal sealed partial class StorageJsonContext : JsonSerializerContext;

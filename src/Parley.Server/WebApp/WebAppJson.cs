using System.Text.Json;
using System.Text.Json.Serialization;
using Parley.Server.Protocol;

namespace Parley.Server.WebApp;

/// <summary>How the app signs in on this server: <c>development</c> (it mints tokens for any user id), <c>jwt</c> (paste a token) or <c>gateway</c>.</summary>
internal sealed record WebAppSettings(string SignIn);

internal sealed class DevelopmentTokenRequest
{
    public string? UserId { get; set; }
}

internal sealed record DevelopmentToken(string Token, string UserId, DateTimeOffset ExpiresAt);

/// <summary>The app's own JSON (snake_case like the API).</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, Converters = [typeof(UtcTimestampConverter)])]
[JsonSerializable(typeof(WebAppSettings))]
[JsonSerializable(typeof(DevelopmentTokenRequest))]
[JsonSerializable(typeof(DevelopmentToken))]
internal sealed partial class WebAppJson : JsonSerializerContext;

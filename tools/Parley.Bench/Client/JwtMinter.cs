using System.Buffers;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Parley.Bench.Client;

/// <summary>
/// Signs HS256 tokens as Parley validates them (docs/authentication.md): <c>sub</c>, optional <c>device_id</c>,
/// <c>iss</c> and <c>aud</c> when the deployment checks them, <c>iat</c>, <c>nbf</c> and <c>exp</c>.
/// </summary>
internal sealed class JwtMinter(string key, string? issuer, string? audience, TimeProvider? time = null)
{
    private static readonly string Header = Base64Url.EncodeToString("""{"alg":"HS256","typ":"JWT"}"""u8);
    private readonly byte[] _key = Encoding.UTF8.GetBytes(key);
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>How long minted tokens live: longer than any run, so no socket is closed with 4003 mid-run.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(24);

    public string Mint(string userId, string? deviceId = null)
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        var payload = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(payload))
        {
            json.WriteStartObject();
            json.WriteString("sub"u8, userId);
            if (deviceId is not null)
            {
                json.WriteString("device_id"u8, deviceId);
            }

            if (!string.IsNullOrEmpty(issuer))
            {
                json.WriteString("iss"u8, issuer);
            }

            if (!string.IsNullOrEmpty(audience))
            {
                json.WriteString("aud"u8, audience);
            }

            // Backdated a minute: a server clock slightly behind this one must not see a token from the future.
            json.WriteNumber("iat"u8, now - 60);
            json.WriteNumber("nbf"u8, now - 60);
            json.WriteNumber("exp"u8, now + (long)Lifetime.TotalSeconds);
            json.WriteEndObject();
        }

        var signingInput = Header + "." + Base64Url.EncodeToString(payload.WrittenSpan);
        var signature = HMACSHA256.HashData(_key, Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + Base64Url.EncodeToString(signature);
    }
}

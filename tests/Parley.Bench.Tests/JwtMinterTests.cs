using System.Text;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Parley.Bench.Client;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class JwtMinterTests
{
    private const string Key = "bench-tests-signing-key-0123456789abcdef";

    private static TokenValidationParameters Parameters(string key = Key, string? issuer = "iss", string? audience = "aud") => new()
    {
        ValidateIssuer = issuer is not null,
        ValidIssuer = issuer,
        ValidateAudience = audience is not null,
        ValidAudience = audience,
        ValidateLifetime = true,
        RequireExpirationTime = true,
        IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)),
        ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
    };

    [Fact]
    public async Task Mint_IsValidForTheKeyIssuerAndAudience_WithSubAndDevice()
    {
        var token = new JwtMinter(Key, "iss", "aud").Mint("bench-u1", "bench");

        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, Parameters());

        Assert.True(result.IsValid, result.Exception?.Message);
        Assert.Equal("bench-u1", result.Claims["sub"]);
        Assert.Equal("bench", result.Claims["device_id"]);
    }

    [Fact]
    public async Task Mint_WithAnotherKey_IsRejected()
    {
        var token = new JwtMinter("another-key-another-key-another-key-0", "iss", "aud").Mint("u");

        Assert.False((await new JsonWebTokenHandler().ValidateTokenAsync(token, Parameters())).IsValid);
    }

    [Fact]
    public async Task Mint_WithoutIssuerAndAudience_LeavesThemOut()
    {
        var token = new JwtMinter(Key, null, null).Mint("u");

        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, Parameters(issuer: null, audience: null));

        Assert.True(result.IsValid, result.Exception?.Message);
        Assert.False(result.Claims.ContainsKey("iss"));
        Assert.False(result.Claims.ContainsKey("device_id"));
    }

    [Fact]
    public async Task Mint_ExpiresAfterItsLifetime()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow - JwtMinter.Lifetime - TimeSpan.FromMinutes(5));
        var token = new JwtMinter(Key, "iss", "aud", time).Mint("u");

        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, Parameters());

        Assert.IsType<SecurityTokenExpiredException>(result.Exception);
    }
}

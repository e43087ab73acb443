using Parley.Server.Sync;

namespace Parley.Server.Tests;

/// <summary>
/// The cursor's text is a contract with every device that holds one: cursors issued by an earlier build must
/// still decode to the same position, and a new build must issue the same text for the same cursor.
/// </summary>
[Trait("Store", "Independent")]
public sealed class CursorTests
{
    private static readonly Guid Epoch = Guid.Parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    private static readonly DateTimeOffset IssuedAt = DateTimeOffset.FromUnixTimeSeconds(1_767_225_600);

    // Written by the build before the encoding moved to System.Buffers.Text.Base64Url; both alphabet
    // substitutions ('-' and '_') occur in it.
    private const string Version2 = "ArKhkAHUw19-ipsMHS4_SlsAAAAAB1vNFQAAAABpVbkA3q2-7w";
    private const string Version1 = "AbKhkAHUw19-ipsMHS4_SlsAAAAAAAAAKgAAAABpVbkA";

    [Fact]
    public void Encode_TheSameCursor_IsTheTextEarlierBuildsIssued()
    {
        var cursor = new Cursor(Epoch, 123_456_789, IssuedAt, 0xDEADBEEF);

        Assert.Equal(Version2, cursor.Encode());
        Assert.Equal(50, Version2.Length);
    }

    [Fact]
    public void TryDecode_ACursorAnEarlierBuildIssued_IsTheSameCursor()
    {
        Assert.True(Cursor.TryDecode(Version2, out var current));
        Assert.Equal(new Cursor(Epoch, 123_456_789, IssuedAt, 0xDEADBEEF), current);
        Assert.True(current!.HasCheck);

        Assert.True(Cursor.TryDecode(Version1, out var old));
        Assert.Equal((Epoch, 42L, IssuedAt), (old!.Epoch, old.Pos, old.IssuedAt));
        Assert.False(old.HasCheck);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("!!!")]
    [InlineData("nope")]
    [InlineData("MTIzOnh5eg")] // valid base64url, not a cursor
    [InlineData("ArKhkAHUw19-ipsMHS4_SlsAAAAAB1vNFQAAAABpVbkA3q2-7")] // one character short
    [InlineData("ArKhkAHUw19-ipsMHS4_SlsAAAAAB1vNFQAAAABpVbkA3q2-7wAAAAAAAAAAAAAAAAAAAAA")] // too long
    public void TryDecode_NotACursor_IsFalse(string? text)
    {
        Assert.False(Cursor.TryDecode(text, out var cursor));
        Assert.Null(cursor);
    }
}

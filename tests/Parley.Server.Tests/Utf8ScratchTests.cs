using System.Text;
using Parley.Server.Protocol;

namespace Parley.Server.Tests;

/// <summary>The per-thread scratch space that frames, event records and fan-out envelopes are built in.</summary>
[Trait("Store", "Independent")]
public sealed class Utf8ScratchTests
{
    [Fact]
    public void WriteJson_AShortPayloadAfterALongOne_HoldsNothingOfTheLongOne()
    {
        var longOne = Utf8Scratch.WriteJson(new string('x', 3000), static (w, s) => w.WriteStringValue(s));
        var shortOne = Utf8Scratch.WriteJson(7, static (w, n) => w.WriteNumberValue(n));

        Assert.Equal(3002, longOne.Length);
        Assert.Equal("7", Encoding.UTF8.GetString(shortOne));
    }

    [Fact]
    public void WriteJson_CalledWhileWriting_BothPayloadsIntact()
    {
        var inner = Array.Empty<byte>();
        var outer = Utf8Scratch.WriteJson(0, (w, _) =>
        {
            w.WriteStartObject();
            w.WriteString("a", "outer");
            inner = Utf8Scratch.WriteJson(0, static (w2, _) =>
            {
                w2.WriteStartArray();
                w2.WriteNumberValue(1);
                w2.WriteEndArray();
            });
            w.WriteString("b", "still outer");
            w.WriteEndObject();
        });

        Assert.Equal("""{"a":"outer","b":"still outer"}""", Encoding.UTF8.GetString(outer));
        Assert.Equal("[1]", Encoding.UTF8.GetString(inner));
    }

    [Fact]
    public void WriteJson_AfterAWriteThatThrew_TheNextStartsClean()
    {
        Assert.Throws<InvalidOperationException>(() => Utf8Scratch.WriteJson(0, static (w, _) =>
        {
            w.WriteStartObject();
            w.WriteString("half", "written");
            throw new InvalidOperationException("the payload could not be built");
        }));

        var next = Utf8Scratch.WriteJson(0, static (w, _) =>
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", true);
            w.WriteEndObject();
        });

        Assert.Equal("""{"ok":true}""", Encoding.UTF8.GetString(next));
    }

    [Fact]
    public void WriteJson_APayloadBeyondTheKeptCapacity_IsWhole_AndTheNextOneToo()
    {
        var big = new string('y', 200_000);
        var first = Utf8Scratch.WriteJson(big, static (w, s) => w.WriteStringValue(s));
        var second = Utf8Scratch.WriteJson("small", static (w, s) => w.WriteStringValue(s));

        Assert.Equal(200_002, first.Length);
        Assert.Equal("\"small\"", Encoding.UTF8.GetString(second));
    }

    [Fact]
    public void Write_RawBytes_AreCopiedOutExactly()
    {
        var bytes = Utf8Scratch.Write(new byte[] { 1, 2, 3 }, static (buffer, b) =>
        {
            b.CopyTo(buffer.GetSpan(3));
            buffer.Advance(3);
        });

        Assert.Equal([1, 2, 3], bytes);
    }
}

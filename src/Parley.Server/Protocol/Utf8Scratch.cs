using System.Buffers;
using System.Text.Json;

namespace Parley.Server.Protocol;

/// <summary>
/// Per-thread scratch space for building one UTF-8 payload (a frame, an event record, a fan-out envelope) and copying
/// it out as an exact-size array. A fresh <see cref="ArrayBufferWriter{T}"/> per payload grew 256 → 512 → … by
/// doubling and allocated four times the payload's size before the copy (docs/benchmarks.md); this one keeps its
/// capacity between payloads. Writing is synchronous, so a thread's scratch is never shared: a call made while the
/// thread's scratch is in use (a nested write) gets one of its own.
/// </summary>
internal static class Utf8Scratch
{
    // A rare huge payload (a long message in a big group's frame) does not stay pinned to the thread afterwards.
    private const int KeptCapacity = 64 * 1024;
    private const int InitialCapacity = 4096;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <summary>The bytes <paramref name="write"/> writes with a JSON writer (default options: compact, escaped).</summary>
    public static byte[] WriteJson<TState>(TState state, Action<Utf8JsonWriter, TState> write)
    {
        var buffer = TakeBuffer();
        var writer = t_writer;
        t_writer = null;
        if (writer is null)
        {
            writer = new Utf8JsonWriter(buffer);
        }
        else
        {
            writer.Reset(buffer);
        }

        try
        {
            write(writer, state);
            writer.Flush();
            return buffer.WrittenSpan.ToArray();
        }
        finally
        {
            if (GiveBack(buffer))
            {
                t_writer = writer;
            }
            else
            {
                writer.Dispose();
            }
        }
    }

    /// <summary>The bytes <paramref name="write"/> writes into a buffer writer.</summary>
    public static byte[] Write<TState>(TState state, Action<IBufferWriter<byte>, TState> write)
    {
        var buffer = TakeBuffer();
        try
        {
            write(buffer, state);
            return buffer.WrittenSpan.ToArray();
        }
        finally
        {
            GiveBack(buffer);
        }
    }

    private static ArrayBufferWriter<byte> TakeBuffer()
    {
        var buffer = t_buffer ?? new ArrayBufferWriter<byte>(InitialCapacity);
        t_buffer = null;
        return buffer;
    }

    private static bool GiveBack(ArrayBufferWriter<byte> buffer)
    {
        if (buffer.Capacity > KeptCapacity)
        {
            return false;
        }

        buffer.ResetWrittenCount();
        t_buffer = buffer;
        return true;
    }
}

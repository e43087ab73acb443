using System.Net.WebSockets;

namespace Parley.Tools;

/// <summary>Reads whole WebSocket messages into one buffer that grows as needed (shared by the bench tool and the relay).</summary>
internal static class WebSocketMessages
{
    /// <summary>
    /// Receives one message into <paramref name="buffer"/> (doubled while it does not fit); returns the buffer that holds
    /// it (the same one or a larger copy, to keep for the next message), its length and its type.
    /// </summary>
    public static async ValueTask<(byte[] Buffer, int Count, WebSocketMessageType Type)> ReceiveAsync(
        WebSocket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        var filled = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            if (filled == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }

            result = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken);
            filled += result.Count;
        }
        while (!result.EndOfMessage);

        return (buffer, filled, result.MessageType);
    }
}

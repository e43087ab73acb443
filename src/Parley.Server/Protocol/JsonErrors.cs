using System.Text.Json;

namespace Parley.Server.Protocol;

/// <summary>What a client is told about JSON it sent that could not be read.</summary>
internal static class JsonErrors
{
    /// <summary>
    /// The reader's own message for a syntax error (it says what and where); for a value of the wrong type, which value
    /// and where, instead of the serializer's message, which names .NET types ("could not be converted to
    /// System.Nullable`1[System.Int32]"); the same for a property given twice.
    /// </summary>
    public static string Describe(JsonException exception) =>
        exception.Message.StartsWith("The JSON value could not be converted to", StringComparison.Ordinal)
            ? $"The value at {exception.Path ?? "$"} has the wrong type{Where(exception)}."
            : exception.Message.StartsWith("Duplicate property", StringComparison.Ordinal)
                ? $"The property at {exception.Path ?? "$"} is given more than once (names are compared without regard to case){Where(exception)}."
                : exception.Message;

    private static string Where(JsonException exception) =>
        exception is { LineNumber: { } line, BytePositionInLine: { } position } ? $" (line {line + 1}, byte {position + 1})" : "";
}

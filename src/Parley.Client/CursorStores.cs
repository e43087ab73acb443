using System.Text.Json;
using Parley.Client.Protocol;

namespace Parley.Client;

/// <summary>
/// What a device keeps between runs: the server's <see cref="Cursor"/> (every event of its conversations up to
/// it was applied) and, per conversation, the last applied <c>seq</c> (to detect a gap or a repeat in the first
/// events after a restart).
/// </summary>
/// <param name="Cursor">The opaque cursor, presented unchanged on the next connection.</param>
/// <param name="Positions">Conversation id → last applied seq.</param>
public sealed record DeliveryCheckpoint(string Cursor, IReadOnlyDictionary<Guid, long> Positions);

/// <summary>
/// Where <see cref="ParleyRealtime"/> persists its <see cref="DeliveryCheckpoint"/>. It saves only after your
/// code has consumed every event the checkpoint covers, one save at a time, newest last.
/// </summary>
public interface ICursorStore
{
    /// <summary>The last saved checkpoint, or null on a device's first run.</summary>
    ValueTask<DeliveryCheckpoint?> LoadAsync(CancellationToken cancellationToken);

    /// <summary>Replaces the saved checkpoint.</summary>
    ValueTask SaveAsync(DeliveryCheckpoint checkpoint, CancellationToken cancellationToken);
}

/// <summary>Keeps the checkpoint in memory: resume works across reconnects, not across restarts of the process.</summary>
public sealed class InMemoryCursorStore : ICursorStore
{
    private DeliveryCheckpoint? _checkpoint;

    /// <summary>The last saved checkpoint.</summary>
    public DeliveryCheckpoint? Checkpoint => Volatile.Read(ref _checkpoint);

    /// <inheritdoc />
    public ValueTask<DeliveryCheckpoint?> LoadAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Checkpoint);

    /// <inheritdoc />
    public ValueTask SaveAsync(DeliveryCheckpoint checkpoint, CancellationToken cancellationToken)
    {
        Volatile.Write(ref _checkpoint, checkpoint);
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Keeps the checkpoint in a JSON file. A save writes a temporary file beside it, flushes it to disk and
/// renames it over the old one, so a crash leaves either the old checkpoint or the new one, never half of one.
/// </summary>
public sealed class FileCursorStore : ICursorStore
{
    private readonly string _path;

    /// <summary>Uses the file at <paramref name="path"/> (its directory is created on the first save).</summary>
    public FileCursorStore(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        _path = Path.GetFullPath(path);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidDataException">The file exists but is not a checkpoint.</exception>
    public async ValueTask<DeliveryCheckpoint?> LoadAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(_path))
        {
            return null;
        }

        await using var stream = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, useAsync: true);
        try
        {
            return await JsonSerializer.DeserializeAsync(stream, WireJson.Default.DeliveryCheckpoint, cancellationToken)
                ?? throw new InvalidDataException($"{_path} holds no checkpoint.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{_path} is not a Parley checkpoint: {ex.Message}", ex);
        }
    }

    /// <inheritdoc />
    public async ValueTask SaveAsync(DeliveryCheckpoint checkpoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var directory = Path.GetDirectoryName(_path)!;
        Directory.CreateDirectory(directory);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(_path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, useAsync: true))
            {
                await JsonSerializer.SerializeAsync(stream, checkpoint, WireJson.Default.DeliveryCheckpoint, cancellationToken);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, _path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }
}

namespace Parley.Client.Tests;

[Trait("Store", "Independent")]
public sealed class CursorStoreTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-client-tests", Guid.NewGuid().ToString("N"));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task FileCursorStore_SaveThenLoadInANewInstance_RoundTrips()
    {
        var path = Path.Combine(_directory, "nested", "cursor.json");
        var conversation = Guid.CreateVersion7();
        await new FileCursorStore(path).SaveAsync(new DeliveryCheckpoint("k1", new Dictionary<Guid, long> { [conversation] = 3 }), Ct);
        await new FileCursorStore(path).SaveAsync(new DeliveryCheckpoint("k2", new Dictionary<Guid, long> { [conversation] = 9 }), Ct);

        var loaded = await new FileCursorStore(path).LoadAsync(Ct);

        Assert.NotNull(loaded);
        Assert.Equal("k2", loaded.Cursor);
        Assert.Equal(9, loaded.Positions[conversation]);
        Assert.Equal(["cursor.json"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(Path.GetFileName));
    }

    [Fact]
    public async Task FileCursorStore_NoFile_LoadsNull()
    {
        Assert.Null(await new FileCursorStore(Path.Combine(_directory, "absent.json")).LoadAsync(Ct));
    }

    [Fact]
    public async Task FileCursorStore_FileIsNotACheckpoint_ThrowsInvalidData()
    {
        Directory.CreateDirectory(_directory);
        var path = Path.Combine(_directory, "cursor.json");
        await File.WriteAllTextAsync(path, "{not json", Ct);

        await Assert.ThrowsAsync<InvalidDataException>(async () => await new FileCursorStore(path).LoadAsync(Ct));
    }

    [Fact]
    public async Task InMemoryCursorStore_Save_LoadReturnsTheLatest()
    {
        var store = new InMemoryCursorStore();
        Assert.Null(await store.LoadAsync(Ct));
        await store.SaveAsync(new DeliveryCheckpoint("k", new Dictionary<Guid, long>()), Ct);
        Assert.Equal("k", (await store.LoadAsync(Ct))?.Cursor);
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }
}

using System.Text.RegularExpressions;

namespace Parley.Server.Tests;

/// <summary>
/// The storage seam depends on nothing above it: features and Hosting use Storage, never the other way round, so
/// the store reports outcomes in its own terms (<c>StoreRefusal</c>, the rules' own rejections) and stores its own
/// JSON. Read from the sources: a dependency hidden in a method body is as real as one in a signature.
/// </summary>
[Trait("Store", "Independent")]
public sealed partial class StorageLayeringTests
{
    [Fact]
    public void StorageSources_NameNoFeatureHostingOrHttpType()
    {
        var storage = Path.Combine(RepositoryRoot(), "src", "Parley.Server", "Storage");
        var sources = Directory.GetFiles(storage, "*.cs", SearchOption.AllDirectories);

        var offences = sources
            .SelectMany(path => File.ReadLines(path).Select((line, index) => (path, line, number: index + 1)))
            .Where(l => UpperLayer().IsMatch(l.line))
            .Select(l => $"{Path.GetRelativePath(storage, l.path)}:{l.number}: {l.line.Trim()}")
            .ToList();

        Assert.NotEmpty(sources);
        Assert.True(offences.Count == 0, "Storage reaches above itself:" + Environment.NewLine + string.Join(Environment.NewLine, offences));
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Parley.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No Parley.slnx above {AppContext.BaseDirectory}.");
    }

    // A using or a qualified name of a feature, Hosting or the HTTP stack (inside namespace Parley.Server.Storage,
    // "Hosting.ApiError" names Parley.Server.Hosting.ApiError).
    [GeneratedRegex(
        @"\b(Parley\.Server\.)?(Hosting|Conversations|Messages|Receipts|Presence|Realtime|Sync|Fanout|Events)\.[A-Z]|Parley\.Server\.(Hosting|Conversations|Messages|Receipts|Presence|Realtime|Sync|Fanout|Events)\b|Microsoft\.AspNetCore|\bHttpContext\b|\bApiError\b")]
    private static partial Regex UpperLayer();
}

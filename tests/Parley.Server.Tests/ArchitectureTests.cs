using System.Text.RegularExpressions;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The folders of src/Parley.Server and the direction of their dependencies (docs/design.md, "Folders and
/// dependencies"): each folder may use only the folders listed for it, all of them below it, so no arrow points
/// back. Read from the sources (usings and qualified names), so a dependency hidden in a method body counts too.
/// </summary>
[Trait("Store", "Independent")]
public sealed partial class ArchitectureTests
{
    /// <summary>
    /// Each folder (namespace below Parley.Server) and what it may use, bottom layer first. Observability (the
    /// instruments and the activity source) is a leaf that every folder may use, the store included; it uses none.
    /// </summary>
    private static readonly (string Folder, string[] MayUse)[] Layers =
    [
        ("Observability", []),
        ("Storage", ["Observability"]),
        ("Protocol", ["Storage", "Observability"]),
        ("Hosting", ["Protocol", "Storage", "Observability"]),
        ("Realtime", ["Hosting", "Protocol", "Storage", "Observability"]),
        ("Fanout", ["Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Broadcasting", ["Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Conversations", ["Broadcasting", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Presence", ["Conversations", "Broadcasting", "Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Receipts", ["Conversations", "Broadcasting", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Messages", ["Presence", "Conversations", "Broadcasting", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Sync", ["Conversations", "Broadcasting", "Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Events", ["Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("Realtime.Endpoint", ["Sync", "Messages", "Receipts", "Presence", "Conversations", "Broadcasting", "Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
        ("WebApp", ["Hosting", "Protocol", "Storage", "Observability"]),
        ("App", ["WebApp", "Events", "Sync", "Messages", "Receipts", "Presence", "Conversations", "Broadcasting", "Fanout", "Realtime", "Hosting", "Protocol", "Storage", "Observability"]),
    ];

    [Fact]
    public void Layers_EachFolderUsesOnlyFoldersBelowIt()
    {
        for (var i = 0; i < Layers.Length; i++)
        {
            var below = Layers.Take(i).Select(l => l.Folder).ToHashSet();
            Assert.All(Layers[i].MayUse, used => Assert.True(below.Contains(used), $"{Layers[i].Folder} may use {used}, which is not below it"));
        }
    }

    [Fact]
    public void Sources_EveryFolderUsesOnlyWhatItsLayerAllows()
    {
        var root = Path.Combine(SourceFacts.RepositoryRoot(), "src", "Parley.Server");
        var offences = Directory.GetFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(path => !IsBuildOutput(root, path))
            .SelectMany(path => Offences(Path.GetRelativePath(root, path), File.ReadAllText(path)))
            .ToList();

        Assert.True(offences.Count == 0, "Dependencies against the direction of docs/design.md:" + Environment.NewLine + string.Join(Environment.NewLine, offences));
    }

    [Fact]
    public void Sources_EveryFolderHasAPlaceInTheLayers()
    {
        var root = Path.Combine(SourceFacts.RepositoryRoot(), "src", "Parley.Server");
        var folders = Directory.GetFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(path => !IsBuildOutput(root, path))
            .Select(path => NamespaceRegex().Match(File.ReadAllText(path)))
            .Where(m => m.Success)
            .Select(m => Folder(m.Groups[1].Value))
            .OfType<string>()
            .ToHashSet();

        Assert.Empty(folders.Except(Layers.Select(l => l.Folder)));
    }

    [Theory]
    [InlineData("using Parley.Server.Messages;\n\nnamespace Parley.Server.Conversations;\n", "Messages")]
    [InlineData("namespace Parley.Server.Storage;\n\nclass A { Parley.Server.Hosting.ApiError? E; }\n", "Hosting")]
    [InlineData("namespace Parley.Server.Realtime;\n\nclass A { object F = Sync.Cursor.At(default, 0, null, default); }\n", "Sync")]
    [InlineData("namespace Parley.Server.Protocol;\n\nusing static Parley.Server.Realtime.Frames;\n", "Realtime")]
    [InlineData("using Parley.Server.Realtime;\n\nnamespace Parley.Server.Observability;\n", "Realtime")]
    public void Offences_AForbiddenUse_IsFound(string source, string forbidden)
    {
        Assert.Contains(Offences("Example.cs", source), o => o.Contains($"uses {forbidden}", StringComparison.Ordinal));
    }

    [Fact]
    public void Offences_AllowedUsesAndLookAlikes_AreNotFound()
    {
        const string Source = "using Parley.Server.Storage;\n\nnamespace Parley.Server.Conversations;\n\nclass A { int N => page.Messages.Count; }\n";

        Assert.Empty(Offences("Example.cs", Source));
    }

    [Fact]
    public void StorageSources_NameNoHttpType()
    {
        // The store reports outcomes in its own terms; HTTP errors are the features' business.
        var storage = Path.Combine(SourceFacts.RepositoryRoot(), "src", "Parley.Server", "Storage");
        var offences = Directory.GetFiles(storage, "*.cs", SearchOption.AllDirectories)
            .SelectMany(path => File.ReadLines(path).Select((line, index) => (path, line, number: index + 1)))
            .Where(l => HttpType().IsMatch(l.line))
            .Select(l => $"{Path.GetRelativePath(storage, l.path)}:{l.number}: {l.line.Trim()}")
            .ToList();

        Assert.True(offences.Count == 0, "Storage names HTTP types:" + Environment.NewLine + string.Join(Environment.NewLine, offences));
    }

    /// <summary>The uses in one source file that its folder's layer does not allow.</summary>
    private static IEnumerable<string> Offences(string path, string source)
    {
        var declared = NamespaceRegex().Match(source);
        var folder = declared.Success ? Folder(declared.Groups[1].Value) : null;
        if (folder is null)
        {
            yield break; // Program.cs: the composition root uses everything
        }

        var allowed = Layers.FirstOrDefault(l => l.Folder == folder).MayUse ?? [];
        var lines = source.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var uses = FullName().Matches(lines[i]).Select(m => Folder("Parley.Server." + m.Groups[1].Value))
                .Concat(PartialName().Matches(lines[i]).Select(m => Folder("Parley.Server." + m.Groups[1].Value)));
            foreach (var used in uses.OfType<string>().Distinct())
            {
                if (used != folder && !allowed.Contains(used) && !(folder.StartsWith(used + ".", StringComparison.Ordinal)))
                {
                    yield return $"{path}:{i + 1}: {folder} uses {used}: {lines[i].Trim()}";
                }
            }
        }
    }

    /// <summary>The layer of a namespace: its first segment below Parley.Server (Realtime.Endpoint is a layer of its own).</summary>
    private static string? Folder(string ns)
    {
        var parts = ns.Split('.');
        if (parts.Length < 3 || parts[0] != "Parley" || parts[1] != "Server")
        {
            return null;
        }

        return parts[2] == "Realtime" && parts.Length > 3 && parts[3] == "Endpoint" ? "Realtime.Endpoint" : parts[2];
    }

    private static bool IsBuildOutput(string root, string path)
    {
        var relative = Path.GetRelativePath(root, path);
        return relative.StartsWith("obj" + Path.DirectorySeparatorChar, StringComparison.Ordinal)
            || relative.StartsWith("bin" + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^namespace (Parley\.Server[\w.]*);", RegexOptions.Multiline)]
    private static partial Regex NamespaceRegex();

    // "Parley.Server.X" anywhere: usings, using static, fully qualified names.
    [GeneratedRegex(@"\bParley\.Server\.([A-Z]\w*(?:\.Endpoint)?)")]
    private static partial Regex FullName();

    // A name qualified by a folder from inside Parley.Server ("Sync.Cursor"), not a member access ("page.Messages.Count").
    [GeneratedRegex(@"(?<![\w.])(App|Broadcasting|Conversations|Fanout|Hosting|Messages|Observability|Presence|Protocol|Realtime|Receipts|Storage|Sync)\.[A-Z]\w*")]
    private static partial Regex PartialName();

    [GeneratedRegex(@"Microsoft\.AspNetCore|\bHttpContext\b|\bApiError\b|\bProblemDetails\b")]
    private static partial Regex HttpType();
}

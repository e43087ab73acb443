using System.Reflection;
using System.Text.RegularExpressions;

namespace Parley.Server.Storage.Migrations;

/// <summary>A versioned schema change, embedded in the assembly as <c>Migrations/&lt;Provider&gt;/NNNN_name.sql</c>.</summary>
internal sealed record MigrationScript(int Version, string Name, string Sql)
{
    /// <summary>The script's file name without extension, as operators see it: <c>0002_stream_positions</c>.</summary>
    public string FullName => $"{Version:D4}_{Name}";
}

internal static partial class MigrationScripts
{
    /// <summary>The provider's scripts in version order.</summary>
    public static IReadOnlyList<MigrationScript> For(string provider)
    {
        var assembly = typeof(MigrationScripts).Assembly;
        var prefix = $"{typeof(MigrationScripts).Namespace}.{provider}.";
        var scripts = new List<MigrationScript>();
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var match = ScriptName().Match(resource[prefix.Length..]);
            if (!match.Success)
            {
                throw new InvalidOperationException($"Migration resource '{resource}' is not named NNNN_name.sql.");
            }

            scripts.Add(new MigrationScript(int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), match.Groups[2].Value, Read(assembly, resource)));
        }

        scripts.Sort((a, b) => a.Version.CompareTo(b.Version));
        return scripts;
    }

    private static string Read(Assembly assembly, string resource)
    {
        using var stream = assembly.GetManifestResourceStream(resource)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    [GeneratedRegex(@"^(\d{4})_([a-z0-9_]+)\.sql$")]
    private static partial Regex ScriptName();
}

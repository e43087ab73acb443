using System.Reflection;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>Facts about the repository and its code that tests check files and contracts against.</summary>
internal static class SourceFacts
{
    /// <summary>The checkout's root: the first directory above the test binaries that holds Parley.slnx.</summary>
    public static string RepositoryRoot()
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

    /// <summary>The public constants of type <typeparamref name="T"/> a class declares, by name.</summary>
    public static IEnumerable<(string Name, T Value)> Constants<T>(Type type) =>
        type.GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.FieldType == typeof(T))
            .Select(f => (f.Name, (T)f.GetRawConstantValue()!));
}

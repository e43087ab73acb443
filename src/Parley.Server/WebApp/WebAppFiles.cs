using System.IO.Compression;
using System.Reflection;
using System.Security.Cryptography;
using Microsoft.AspNetCore.StaticFiles;

namespace Parley.Server.WebApp;

/// <summary>One file of the app, as it is served: its bytes (and gzipped bytes, when that is smaller), type and ETag.</summary>
internal sealed record WebAppFile(string Path, byte[] Content, byte[]? Gzipped, string ContentType, string ETag, bool Immutable);

/// <summary>
/// The app's files: the built bundle under WebApp/bundle, embedded in the assembly at build time (logical names
/// <c>parley-app/...</c>), so the server serves the app with nothing but its own binaries, from any working directory.
/// Read once, on first use; an ETag is the hash of the content, and text is gzipped once here, not per request.
/// </summary>
internal sealed class WebAppFiles
{
    public const string ResourcePrefix = "parley-app/";

    private readonly Lazy<IReadOnlyDictionary<string, WebAppFile>> _files;

    public WebAppFiles()
        : this(typeof(WebAppFiles).Assembly)
    {
    }

    public WebAppFiles(Assembly assembly) => _files = new(() => Load(assembly));

    public IReadOnlyDictionary<string, WebAppFile> All => _files.Value;

    public WebAppFile? Find(string path) => _files.Value.GetValueOrDefault(path);

    private static Dictionary<string, WebAppFile> Load(Assembly assembly)
    {
        var types = new FileExtensionContentTypeProvider();
        types.Mappings[".webmanifest"] = "application/manifest+json";
        var files = new Dictionary<string, WebAppFile>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            var content = buffer.ToArray();

            // RecursiveDir carries the build machine's separator.
            var path = name[ResourcePrefix.Length..].Replace('\\', '/');
            var contentType = types.TryGetContentType(path, out var known) ? known : "application/octet-stream";
            if (contentType.StartsWith("text/", StringComparison.Ordinal) || contentType is "application/javascript" or "image/svg+xml" or "application/json" or "application/manifest+json")
            {
                contentType = contentType == "application/javascript" ? "text/javascript; charset=utf-8" : contentType + "; charset=utf-8";
            }

            var etag = $"\"{Convert.ToBase64String(SHA256.HashData(content).AsSpan(0, 16)).TrimEnd('=')}\"";

            // Vite names what it builds into assets/ after its content hash: such a file never changes under its name.
            files[path] = new WebAppFile(path, content, Gzip(content, contentType), contentType, etag, Immutable: path.StartsWith("assets/", StringComparison.Ordinal));
        }

        return files;
    }

    private static byte[]? Gzip(byte[] content, string contentType)
    {
        if (content.Length < 1024 || contentType.StartsWith("image/png", StringComparison.Ordinal))
        {
            return null;
        }

        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            gzip.Write(content);
        }

        return output.Length < content.Length ? output.ToArray() : null;
    }
}

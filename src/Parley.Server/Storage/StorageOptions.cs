using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Storage;

internal enum StorageProvider
{
    Sqlite,
}

internal sealed class StorageOptions
{
    public const string SectionName = "Storage";

    /// <summary>Which database holds conversations and messages. <c>Sqlite</c> (default) needs nothing installed.</summary>
    [EnumDataType(typeof(StorageProvider))]
    public StorageProvider Provider { get; set; } = StorageProvider.Sqlite;
}

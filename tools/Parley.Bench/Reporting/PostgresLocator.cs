using System.Globalization;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Reporting;

/// <summary>
/// Finds the postmaster (the parent process) of one PostgreSQL server in /proc, so that the measurement covers that
/// server's processes (the postmaster and its children, the backends and background workers) and no other
/// PostgreSQL on the machine. A postmaster is a process named <c>postgres</c> whose parent is not; its command line
/// (world-readable) names its data directory (<c>-D</c>) and, when not in postgresql.conf, its port (<c>-p</c>);
/// the data directory's <c>postmaster.pid</c> holds its PID (line 1) and port (line 4), readable by its owner.
/// </summary>
internal static class PostgresLocator
{
    public const int DefaultPort = 5432;
    private const string ProcessName = "postgres";

    /// <summary>The postmaster's PID; throws <see cref="SetupException"/> when there is none or the choice is ambiguous.</summary>
    /// <param name="proc">The /proc directory.</param>
    /// <param name="port">Only the server on this port, if given.</param>
    /// <param name="dataDirectory">Only the server of this data directory, if given.</param>
    public static int Find(string proc, int? port, string? dataDirectory)
    {
        if (dataDirectory is not null && PidFile(dataDirectory) is { } fromFile && IsPostmaster(proc, fromFile.Pid))
        {
            return fromFile.Pid;
        }

        var postmasters = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories(proc))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || !IsPostmaster(proc, pid))
            {
                continue;
            }

            var arguments = CommandLine(proc, pid);
            var data = Argument(arguments, "-D");
            if (dataDirectory is not null && (data is null || !SamePath(data, dataDirectory)))
            {
                continue;
            }

            if (port is { } wanted && PortOf(arguments, data) != wanted)
            {
                continue;
            }

            postmasters.Add(pid);
        }

        var what = dataDirectory is not null ? $" with data directory {dataDirectory}" : port is { } p ? $" on port {p}" : "";
        return postmasters.Count switch
        {
            1 => postmasters[0],
            0 => throw new SetupException($"no PostgreSQL server{what} runs on this machine (or its processes are not readable)"),
            _ => throw new SetupException(
                $"{postmasters.Count} PostgreSQL servers{what} run on this machine (postmaster PIDs {string.Join(", ", postmasters.Order())}): choose one with --postgres-port or --postgres-data"),
        };
    }

    /// <summary>The port of a postmaster: its <c>-p</c>, else line 4 of its data directory's postmaster.pid, else 5432.</summary>
    private static int PortOf(IReadOnlyList<string> arguments, string? dataDirectory) =>
        Argument(arguments, "-p") is { } p && int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var port) ? port
        : dataDirectory is not null && PidFile(dataDirectory) is { Port: { } filePort } ? filePort
        : DefaultPort;

    private static bool IsPostmaster(string proc, int pid) =>
        Comm(proc, pid) == ProcessName && ParentOf(proc, pid) is { } parent && Comm(proc, parent) != ProcessName;

    /// <summary>The parent PID of a process (field 4 of /proc/PID/stat).</summary>
    public static int? ParentOf(string proc, int pid)
    {
        var stat = Read(Path.Combine(proc, pid.ToString(CultureInfo.InvariantCulture), "stat"));
        var close = stat?.LastIndexOf(')') ?? -1;
        if (stat is null || close < 0 || close + 2 >= stat.Length)
        {
            return null;
        }

        var fields = stat[(close + 2)..].Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 1 && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent) ? parent : null;
    }

    private static string? Comm(string proc, int pid) => Read(Path.Combine(proc, pid.ToString(CultureInfo.InvariantCulture), "comm"))?.Trim();

    private static string[] CommandLine(string proc, int pid) =>
        Read(Path.Combine(proc, pid.ToString(CultureInfo.InvariantCulture), "cmdline"))?.Split('\0', StringSplitOptions.RemoveEmptyEntries) ?? [];

    /// <summary>The value of an option given as <c>-D dir</c> or <c>-Ddir</c>.</summary>
    private static string? Argument(IReadOnlyList<string> arguments, string option)
    {
        for (var i = 0; i < arguments.Count; i++)
        {
            if (arguments[i] == option)
            {
                return i + 1 < arguments.Count ? arguments[i + 1] : null;
            }

            if (arguments[i].StartsWith(option, StringComparison.Ordinal) && arguments[i].Length > option.Length)
            {
                return arguments[i][option.Length..];
            }
        }

        return null;
    }

    private static (int Pid, int? Port)? PidFile(string dataDirectory)
    {
        var lines = Read(Path.Combine(dataDirectory, "postmaster.pid"))?.Split('\n');
        if (lines is null || !int.TryParse(lines[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
        {
            return null;
        }

        return (pid, lines.Length > 3 && int.TryParse(lines[3].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var port) ? port : null);
    }

    private static bool SamePath(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)), StringComparison.Ordinal);

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

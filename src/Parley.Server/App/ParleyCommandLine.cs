using System.Reflection;
using Parley.Server.Storage;

namespace Parley.Server.App;

/// <summary>
/// The server's command line: <c>[command] [--Key=value ...]</c>. Commands are <c>serve</c> (the default),
/// <c>token</c>, <c>migrate</c>, <c>new-epoch</c> and <c>help</c>. <c>-h</c>/<c>--help</c> and <c>--version</c> are answered wherever
/// they appear and never act: nothing starts, no database file is created. Everything else on the line is
/// settings, read by the configuration exactly as ASP.NET Core reads them.
/// </summary>
internal static class ParleyCommandLine
{
    public const string Serve = "serve";
    public const string Token = "token";
    public const string Migrate = "migrate";
    public const string NewEpoch = "new-epoch";
    public const string Help = "help";

    private static readonly string[] HelpFlags = ["-h", "--help", "-?"];

    /// <summary>
    /// Runs the command <paramref name="args"/> ask for and returns its exit code, or null when they ask to serve
    /// (no command, or <c>serve</c>): the caller then builds the server from <see cref="ServerOptions"/>.
    /// </summary>
    public static async Task<int?> RunCommandAsync(string[] args)
    {
        var command = args.Length > 0 && IsWord(args[0]) ? args[0] : null;
        var rest = command is null ? args : args[1..];
        if (args.Contains("--version", StringComparer.Ordinal))
        {
            await Console.Out.WriteLineAsync(VersionLine());
            return 0;
        }

        if (command == Help)
        {
            // "help" alone, or "help <command>" as "<command> --help" would.
            return await ShowHelpAsync(rest.FirstOrDefault(IsWord) ?? Serve);
        }

        if (rest.Any(HelpFlags.Contains))
        {
            return await ShowHelpAsync(command ?? Serve);
        }

        return command switch
        {
            null or Serve => CheckServerSettings(args),
            Token => TokenCommand.Run(rest),
            Migrate => await StorageCommands.MigrateAsync(rest),
            NewEpoch => await StorageCommands.NewEpochAsync(rest),
            _ => await UnknownAsync(command),
        };
    }

    /// <summary>How the server (and every command) builds its host: settings from the line, configuration files beside the binaries.</summary>
    public static WebApplicationOptions ServerOptions(string[] args) =>
        // Data files (parley.db) stay in the working directory; appsettings*.json are read from beside the binaries.
        new() { Args = args.Length > 0 && args[0] == Serve ? args[1..] : args, ContentRootPath = AppContext.BaseDirectory };

    /// <summary>
    /// Null when the server's settings can be bound, else 1 after printing what is wrong. This runs before the
    /// server is built because building it already binds options (Kestrel's limits): a value the binder cannot
    /// convert would end the process there with a stack trace. It reads the configuration the server will read
    /// (same files, environment and command line); unknown keys are left to the server's log.
    /// </summary>
    private static int? CheckServerSettings(string[] args)
    {
        var configuration = WebApplication.CreateBuilder(ServerOptions(args)).Configuration;
        using (configuration)
        {
            return ConfigurationCheck.Report(configuration, "Parley cannot start", warnUnknown: false, serving: true) ? null : 1;
        }
    }

    public static string VersionLine()
    {
        var assembly = typeof(ParleyCommandLine).Assembly;
        var version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString() ?? "unknown";
        return $"Parley {version}";
    }

    /// <summary>
    /// A command name rather than a setting: settings start with <c>--</c>, <c>-</c> or <c>/</c>, or are
    /// <c>Key=value</c> (which the configuration also accepts without a prefix).
    /// </summary>
    private static bool IsWord(string argument) =>
        argument.Length > 0 && argument[0] is not ('-' or '/') && !argument.Contains('=', StringComparison.Ordinal);

    private static async Task<int> ShowHelpAsync(string command)
    {
        var text = command switch
        {
            Serve => ServeHelp,
            Token => TokenCommand.HelpText,
            Migrate => StorageCommands.MigrateHelp,
            NewEpoch => StorageCommands.NewEpochHelp,
            _ => null,
        };
        if (text is null)
        {
            return await UnknownAsync(command);
        }

        await Console.Out.WriteAsync(text);
        return 0;
    }

    private static async Task<int> UnknownAsync(string command)
    {
        await Console.Error.WriteLineAsync(
            $"Parley: unknown command '{command}'. Commands: {Serve} (the default), {Token}, {Migrate}, {NewEpoch}, {Help}. Settings are written --Key=value; see --help.");
        return 1;
    }

    private const string ServeHelp =
        $"""
        Parley: a self-hostable real-time messaging server (REST under /api/v1, WebSocket at /ws).

        Usage: Parley.Server [command] [--Key=value ...]
           or: dotnet run --project src/Parley.Server -- [command] [--Key=value ...]

        Commands:
          {Serve}      run the server (the default when no command is given)
          {Token}      print a bearer token for a user, signed with the configured or development key
          {Migrate}    apply the database schema migrations, then exit
          {NewEpoch}  after restoring a database backup: make every device reload (docs/delivery.md)
          {Help}       show this help; "help <command>" (or "<command> --help") shows a command's

        Options:
          -h, --help   show help and exit
          --version    print the version and exit

        Settings: any setting as --Key=value (or --Key value) on the command line, or as the environment
        variable Key__Sub=value (e.g. Storage__Provider=Postgres). The most important ones:
          --urls <url;...>                   where to listen (default http://*:8083;
                                             http://localhost:8083 in Development)
          --environment <name>               Production (default) or Development (dotnet run): Development
                                             signs tokens with a documented key and logs readable lines
          --Storage:Provider=<provider>      Sqlite (default) or Postgres
          --ConnectionStrings:Sqlite=<cs>    default "{StorageSetup.DefaultSqliteConnectionString}", in the working directory;
                                             one file belongs to one process (a lock file <file>.lock beside it)
          ConnectionStrings__Postgres=<cs>   required with Postgres, an Npgsql connection string, e.g.
                                             "Host=db;Username=parley;Password=...;Database=parley"
                                             (an environment variable: a command line is visible in ps)
          --Auth:Mode=<mode>                 Jwt (default: bearer tokens) or Header (behind a gateway that
                                             authenticates users and sets X-User-ID)
          Auth__Jwt__SigningKey=<key>        HS256 key of at least 32 bytes (or Auth:Jwt:Authority for OpenID
                                             Connect); required in Jwt mode outside Development
          --Cors:AllowedOrigins:0=<origin>   a browser origin allowed to call the API
          --App:Enabled=<true|false>         the chat app at /app (default: on in Development only)

        Every setting and limit: docs/configuration.md. Probes: GET /health (live), GET /ready (ready).
        Metrics: GET /metrics (Prometheus; this machine only unless --Metrics:AllowedNetworks:0=<cidr>), docs/operations.md.

        """;
}

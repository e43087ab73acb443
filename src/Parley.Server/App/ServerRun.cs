using Microsoft.Extensions.Options;

namespace Parley.Server.App;

/// <summary>Runs the server once it is built (Program.cs).</summary>
internal static class ServerRun
{
    /// <summary>
    /// Runs the app. Whatever stops start-up (an invalid setting, an address in use, a database held by another
    /// process) ends it with a message on standard error and exit code 1 instead of a stack trace; the host has
    /// logged the exception itself, with its stack trace, before that.
    /// </summary>
    public static async Task<int> RunParleyAsync(this WebApplication app)
    {
        // Invalid values were refused before the app was built (ParleyCommandLine); keys nothing reads are worth a warning.
        var configurationLog = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Parley.Configuration");
        ConfigurationCheck.LogUnknown(configurationLog, ConfigurationCheck.Check(app.Configuration));
        // Once started: the settings it reads are validated at start, and an invalid one must end start-up with its message.
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            Hosting.Auth.AuthSetup.WarnIfUnguarded(app.Services, app.Environment, configurationLog);
            app.Services.GetRequiredService<IOptions<Hosting.LimitsOptions>>().Value.WarnIfTooSmallForContent(configurationLog);
        });

        // The token, not the lifetime: the host (and its services) is disposed by the time a failure reaches the catch.
        var started = app.Lifetime.ApplicationStarted;
        string[] failure;
        try
        {
            // Disposes the host (and flushes its log) also when start-up fails.
            await app.RunAsync();
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            failure = ["Parley cannot start: invalid configuration.", .. ex.Failures.Select(f => "  - " + f)];
        }
        catch (IOException ex) when (ex.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            failure = [$"Parley cannot start: {ex.Message} Stop the other process or choose another address with --urls."];
        }
        catch (Exception ex) when (ex is not OperationCanceledException && !started.IsCancellationRequested)
        {
            // The database file is held by another process, an HTTPS address has no certificate, ...
            failure = [$"Parley cannot start: {ex.Message}"];
        }

        foreach (var line in failure)
        {
            await Console.Error.WriteLineAsync(line);
        }

        return 1;
    }
}

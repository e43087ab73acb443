namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// Runs a server command in process with the console redirected. One at a time (the console is global);
/// other test servers' log lines may still land in the capture, so assertions look for their own text.
/// </summary>
internal static class ConsoleCapture
{
    private static readonly SemaphoreSlim Gate = new(1, 1);

    public static (T Result, string Output, string Error) Run<T>(Func<T> action)
    {
        Gate.Wait(TestContext.Current.CancellationToken);
        var (stdout, stderr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            var result = action();
            return (result, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            Gate.Release();
        }
    }

    public static async Task<(T Result, string Output, string Error)> RunAsync<T>(Func<Task<T>> action)
    {
        await Gate.WaitAsync(TestContext.Current.CancellationToken);
        var (stdout, stderr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            var result = await action();
            return (result, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            Gate.Release();
        }
    }
}

namespace Parley.Bench.Processes;

/// <summary>
/// Where the tool writes: results, progress and the summary to <see cref="Out"/>, set-up and phase messages to
/// <see cref="Error"/>. The real console normally; tests that run the tool in their own process pass writers of
/// their own.
/// </summary>
internal sealed record Terminal(TextWriter Out, TextWriter Error, bool IsInteractive)
{
    public static Terminal System => new(Console.Out, Console.Error, !Console.IsOutputRedirected);
}

namespace Parley.Relay;

/// <summary>Runs the relay (<see cref="RelayApp"/>); an explicit entry point, so that no second global <c>Program</c> meets Parley.Server's in the tests.</summary>
internal static class RelayProgram
{
    private static Task Main(string[] args) => RelayApp.Create(args).RunAsync();
}

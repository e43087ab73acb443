namespace Parley.Server.Fanout;

internal static class FanoutSetup
{
    /// <summary>The fan-out between writers and sockets: in-process (one instance).</summary>
    public static IHostApplicationBuilder AddFanout(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IFanout, InProcessFanout>();
        return builder;
    }
}

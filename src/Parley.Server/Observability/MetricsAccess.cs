using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace Parley.Server.Observability;

/// <summary>
/// Who may read <c>/metrics</c>: a client in <see cref="MetricsOptions.AllowedNetworks"/> (loopback by default), on
/// <see cref="MetricsOptions.Port"/> when one is set. The port is the one the connection arrived on, never the Host
/// header (a client chooses that one). The address is the connection's peer: behind a reverse proxy on the same
/// machine every client looks local, so either keep the proxy from forwarding <c>/metrics</c> or use the port.
/// </summary>
internal sealed partial class MetricsAccess(IOptions<MetricsOptions> options, ILogger<MetricsAccess> logger)
{
    private readonly Lazy<NetworkAllowList> _networks = new(() => new NetworkAllowList(options.Value.AllowedNetworks));

    public bool Allows(HttpContext context)
    {
        var connection = context.Connection;
        if (options.Value.Port is { } port && connection.LocalPort != port)
        {
            Log.Refused(logger, connection.RemoteIpAddress, connection.LocalPort, "not the metrics port");
            return false;
        }

        if (!_networks.Value.Allows(connection.RemoteIpAddress))
        {
            Log.Refused(logger, connection.RemoteIpAddress, connection.LocalPort, "address not in Metrics:AllowedNetworks");
            return false;
        }

        return true;
    }

    /// <summary>The answer to anyone else: the same 404 ProblemDetails as an unknown path, so the endpoint's existence is not revealed.</summary>
    public static async Task RefuseAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = new ProblemDetails { Status = StatusCodes.Status404NotFound },
        });
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7001, Level = LogLevel.Debug, Message = "Metrics request from {RemoteAddress} on port {LocalPort} refused: {Reason}")]
        public static partial void Refused(ILogger logger, System.Net.IPAddress? remoteAddress, int localPort, string reason);
    }
}

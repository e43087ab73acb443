using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Observability;
using Parley.Server.Protocol;

namespace Parley.Server.Realtime.Endpoint;

internal static class WebSocketEndpoint
{
    /// <summary>The WebSocket endpoint: the one path that accepts a token as <c>?access_token=</c>.</summary>
    public const string Path = FrameTypes.WebSocketPath;

    /// <summary>The socket's frame handling (the WebSocket itself is mapped by <see cref="MapRealtime"/>).</summary>
    public static IHostApplicationBuilder AddWebSocketEndpoint(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<FrameDispatcher>();
        builder.Services.AddSingleton<SocketSessions>();
        builder.Services.AddSingleton<DirectUpgrade>();
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<RealtimeOptions>, IConfiguration>((kestrel, realtime, configuration) =>
        {
            if (realtime.Value.DirectUpgrade)
            {
                kestrel.ConfigureEndpointDefaults(DirectUpgrade.AddTo);
                // Endpoints of Kestrel:Endpoints where Parley terminates TLS: the middleware inside it. Configured again as the
                // host configured it (the same section, reloaded on change), with a callback per endpoint name.
                var section = configuration.GetSection("Kestrel");
                var endpoints = section.GetSection("Endpoints").GetChildren().Select(e => e.Key).ToList();
                if (endpoints.Count > 0)
                {
                    var loader = kestrel.Configure(section, reloadOnChange: true);
                    foreach (var name in endpoints)
                    {
                        loader.Endpoint(name, DirectUpgrade.AddInsideTls);
                    }
                }
            }
        });
        return builder;
    }

    public static IEndpointRouteBuilder MapRealtime(this IEndpointRouteBuilder app)
    {
        // GET for the HTTP/1.1 upgrade; CONNECT for WebSockets over HTTP/2 (RFC 8441), which browsers may use over TLS.
        app.MapMethods(Path, [HttpMethods.Get, HttpMethods.Connect], HandleAsync)
            .RequireAuthorization()
            .WithTags("Realtime")
            .WithSummary("WebSocket upgrade (see docs/websocket.md)")
            .ExcludeFromDescription();
        return app;
    }

    private static async Task<IResult> HandleAsync(HttpContext context, Caller caller, SocketSessions sessions)
    {
        if (!sessions.Accepting)
        {
            return Refused(context, SocketSessions.Draining);
        }

        if (!context.WebSockets.IsWebSocketRequest)
        {
            return ApiResults.Problem(ApiError.BadRequest(ErrorCodes.InvalidRequest, "This endpoint only accepts WebSocket upgrades."));
        }

        var checkedRequest = await sessions.CheckAsync(SocketRequest.Read(context, caller), context.RequestAborted);
        if (checkedRequest.Value is not { } checkedPlan)
        {
            return Refused(context, checkedRequest.Error!);
        }

        using var plan = checkedPlan; // the user's socket slot, until the socket has ended

        // Parley's heartbeat (one timer for every socket) where the socket runs over its stream; otherwise .NET's
        // keep-alive, a timer per socket.
        var options = sessions.Options;
        var upgrade = context.Features.Get<HeartbeatUpgrade>();
        var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            SubProtocol = plan.Subprotocol,
            KeepAliveInterval = upgrade is null ? options.HeartbeatInterval : TimeSpan.Zero,
            KeepAliveTimeout = upgrade is null ? options.HeartbeatTimeout : Timeout.InfiniteTimeSpan,
            DangerousEnableCompression = false,
        });
        await sessions.RunAsync(plan, socket, upgrade?.Stream, ParleyMetrics.UpgradePipeline, context.RequestAborted);
        return Results.Empty;
    }

    private static IResult Refused(HttpContext context, ApiError error)
    {
        if (error.Status == 503)
        {
            // Shutting down: the device connects again, and the load balancer (readiness is failing) sends it elsewhere.
            context.Response.Headers.RetryAfter = "1";
        }
        else if (error.Status == 429)
        {
            // Too many sockets of this user here: one of them has to close first.
            context.Response.Headers.RetryAfter = "10";
        }

        return ApiResults.Problem(error);
    }
}

using Microsoft.AspNetCore.Http.Features;
using Parley.Server.Protocol;

namespace Parley.Server.Realtime;

/// <summary>
/// Puts a <see cref="HeartbeatStream"/> under the WebSockets of <c>/ws</c>: the upgrade features of the request
/// (HTTP/1.1 upgrade, HTTP/2 extended CONNECT) are wrapped before ASP.NET Core's WebSocket middleware takes them,
/// so the WebSocket it creates reads and writes through the stream. Added first in the pipeline (<see cref="First"/>).
/// </summary>
internal sealed class HeartbeatUpgrade : IHttpUpgradeFeature, IHttpExtendedConnectFeature
{
    private readonly IHttpUpgradeFeature? _upgrade;
    private readonly IHttpExtendedConnectFeature? _connect;
    private readonly TimeProvider _time;

    private HeartbeatUpgrade(IHttpUpgradeFeature? upgrade, IHttpExtendedConnectFeature? connect, TimeProvider time)
    {
        _upgrade = upgrade;
        _connect = connect;
        _time = time;
    }

    /// <summary>The stream under the accepted WebSocket; null until the upgrade (or when it failed). A request without
    /// this feature (another path spelling, a host with its own WebSockets) keeps .NET's own keep-alive.</summary>
    public HeartbeatStream? Stream { get; private set; }

    /// <summary>Adds the wrapping at the start of the pipeline, ahead of the WebSocket middleware that <c>Hosting</c> adds.</summary>
    internal sealed class First : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            Use(app);
            next(app);
        };
    }

    private static void Use(IApplicationBuilder app)
    {
        var time = app.ApplicationServices.GetRequiredService<TimeProvider>();
        app.Use((context, next) =>
        {
            var features = context.Features;
            // A host that brings its own WebSocket feature (the in-memory test server) creates its sockets itself.
            if (context.Request.Path.Equals(FrameTypes.WebSocketPath, StringComparison.OrdinalIgnoreCase) && features.Get<IHttpWebSocketFeature>() is null)
            {
                var upgrade = features.Get<IHttpUpgradeFeature>();
                var connect = features.Get<IHttpExtendedConnectFeature>();
                if (upgrade is { IsUpgradableRequest: true } || connect is { IsExtendedConnect: true })
                {
                    var wrapper = new HeartbeatUpgrade(upgrade, connect, time);
                    features.Set<HeartbeatUpgrade>(wrapper);
                    if (upgrade is not null)
                    {
                        features.Set<IHttpUpgradeFeature>(wrapper);
                    }

                    if (connect is not null)
                    {
                        features.Set<IHttpExtendedConnectFeature>(wrapper);
                    }
                }
            }

            return next(context);
        });
    }

    public bool IsUpgradableRequest => _upgrade?.IsUpgradableRequest ?? false;

    public bool IsExtendedConnect => _connect?.IsExtendedConnect ?? false;

    public string? Protocol => _connect?.Protocol;

    public async Task<System.IO.Stream> UpgradeAsync() =>
        Stream = new HeartbeatStream(await (_upgrade ?? throw new InvalidOperationException("Not an upgrade request.")).UpgradeAsync(), _time);

    public async ValueTask<System.IO.Stream> AcceptAsync() =>
        Stream = new HeartbeatStream(await (_connect ?? throw new InvalidOperationException("Not an extended CONNECT request.")).AcceptAsync(), _time);
}

using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Realtime;

internal sealed class RealtimeOptions
{
    public const string SectionName = "Realtime";

    /// <summary>
    /// Accept plain HTTP/1.1 WebSocket upgrades of <c>/ws</c> below ASP.NET Core's request pipeline (Kestrel connection
    /// middleware), so that an open socket does not keep an HTTP request alive: about half of its memory. Refused upgrades,
    /// TLS and HTTP/2 always take the pipeline. On by default.
    /// </summary>
    public bool DirectUpgrade { get; set; } = true;

    /// <summary>How often the server pings each socket (WebSocket ping frames); also sent to clients as heartbeat_interval_ms.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>A socket that does not answer a ping within this time is considered dead and aborted.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>Frames queued for one socket before it is treated as a slow consumer and closed with 4001.</summary>
    [Range(8, 1_000_000)]
    public int SendQueueCapacity { get; set; } = 1024;

    /// <summary>Longest time one frame may take to reach the socket before the connection is aborted.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:05:00")]
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the server waits for the peer's close frame after sending its own.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:01:00")]
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Sockets one user may hold on this instance; an upgrade past it is refused with 429. Each socket has its own
    /// send queue and ack budget, so without a bound one token could open sockets until the instance runs out of memory.
    /// </summary>
    [Range(1, 100_000)]
    public int MaxConnectionsPerUser { get; set; } = 50;

    /// <summary>
    /// Sustained client frames per second per user on this instance, shared by the user's sockets here (typing,
    /// receipts, sends, pings; acks have their own budget, per socket). Per socket, more sockets would buy more frames.
    /// </summary>
    [Range(1, 100_000)]
    public int InboundFramesPerSecond { get; set; } = 30;

    [Range(1, 1_000_000)]
    public int InboundBurst { get; set; } = 120;

    /// <summary>
    /// Sustained <c>ack</c> frames per second per socket. Separate from the other frames, and higher: an ack names
    /// one conversation and is cheap (one lookup, delivered reports are coalesced), and a device back from a long
    /// absence acknowledges every conversation that moved, without starving its typing, reads and sends.
    /// </summary>
    [Range(1, 100_000)]
    public int AckFramesPerSecond { get; set; } = 100;

    [Range(1, 1_000_000)]
    public int AckBurst { get; set; } = 1000;

    /// <summary>A typing indicator that is not refreshed within this time expires (others get is_typing: false).</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:05:00")]
    public TimeSpan TypingTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Typing indicators are broadcast in conversations with at most this many members: in a larger group each start
    /// and end would go to every member's devices, for an indicator few of them look at. Above it a typing request is
    /// accepted and not broadcast (clients read the limit from <c>GET /api/v1/config</c> and hide the indicator).
    /// </summary>
    [Range(2, 1_000_000)]
    public int TypingMaxConversationSize { get; set; } = 1000;

    /// <summary>How long delivered reports are coalesced before they are written (one write per conversation and user).</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:00:10")]
    public TimeSpan DeliveryFlushInterval { get; set; } = TimeSpan.FromMilliseconds(100);
}

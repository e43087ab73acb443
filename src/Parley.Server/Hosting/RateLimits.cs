using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>
/// Per-caller token buckets: every request counts against the caller's request rate; sends also against the
/// caller's message rate (<see cref="LimitsOptions.SendRatePerSecond"/> with bursts of <see cref="LimitsOptions.SendBurst"/>).
/// Callers are keyed by user id, unauthenticated requests by client address. Rejections are 429 ProblemDetails
/// with <c>Retry-After</c>.
/// </summary>
internal static class RateLimits
{
    /// <summary>
    /// The service key of the per-user message rate, a <see cref="PartitionedRateLimiter{String}"/> keyed by user id:
    /// one bucket per user, shared by REST sends and the WebSocket's <c>send_message</c>.
    /// </summary>
    public const string SendRate = "send-rate";

    /// <summary>
    /// The service key of the per-user budget of WebSocket frames other than acks
    /// (<c>Realtime:InboundFramesPerSecond</c>), a <see cref="PartitionedRateLimiter{String}"/> keyed by user id:
    /// one bucket per user, shared by the user's sockets on this instance.
    /// </summary>
    public const string FrameRate = "frame-rate";

    public static IHostApplicationBuilder AddRateLimits(this IHostApplicationBuilder builder)
    {
        builder.Services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
            {
                var limits = context.RequestServices.GetRequiredService<IOptions<LimitsOptions>>().Value;
                return RateLimitPartition.GetTokenBucketLimiter(
                    "request:" + KeyOf(context),
                    _ => Bucket(limits.RequestRatePerSecond, limits.RequestBurst));
            });
            options.OnRejected = async (context, cancellationToken) =>
            {
                var retryAfter = RetryAfterSeconds(context.Lease);
                var http = context.HttpContext;
                http.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
                await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
                {
                    HttpContext = http,
                    ProblemDetails = new ProblemDetails
                    {
                        Status = StatusCodes.Status429TooManyRequests,
                        Detail = $"Too many requests; retry after {retryAfter} s.",
                        Extensions = { ["code"] = ErrorCodes.RateLimited },
                    },
                });
            };
        });
        builder.Services.AddKeyedSingleton(SendRate, (services, _) =>
        {
            var limits = services.GetRequiredService<IOptions<LimitsOptions>>().Value;
            return PerUser(services.GetRequiredService<TimeProvider>(), limits.SendRatePerSecond, limits.SendBurst);
        });
        return builder;
    }

    /// <summary>A token bucket per user id (idle full buckets are evicted by the partitioned limiter).</summary>
    public static PartitionedRateLimiter<string> PerUser(TimeProvider time, double perSecond, int burst) =>
        PartitionedRateLimiter.Create<string, string>(
            userId => RateLimitPartition.Get(userId, _ => new ClockedTokenBucket(time, perSecond, burst)), StringComparer.Ordinal);

    /// <summary>Whole seconds, at least one, until a refused request may succeed (Retry-After and the error texts).</summary>
    public static int RetryAfterSeconds(RateLimitLease lease) =>
        lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : 1;

    /// <summary>The endpoint sends messages: the caller's message rate applies (shared with the WebSocket's send_message).</summary>
    public static RouteHandlerBuilder RequireSendRate(this RouteHandlerBuilder builder) =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            if (Caller.From(http) is not { } caller)
            {
                return await next(context);
            }

            using var lease = http.RequestServices.GetRequiredKeyedService<PartitionedRateLimiter<string>>(SendRate).AttemptAcquire(caller.UserId);
            if (lease.IsAcquired)
            {
                return await next(context);
            }

            var seconds = RetryAfterSeconds(lease);
            http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            return ApiResults.Problem(new ApiError(429, ErrorCodes.RateLimited, $"Too many messages; retry after {seconds} s."));
        });

    private static string KeyOf(HttpContext context) =>
        Caller.From(context)?.UserId is { } user ? "u:" + user : "ip:" + context.Connection.RemoteIpAddress;

    // Not auto-replenishing: the partitioned limiter refills all its buckets from one timer instead of one timer per caller.
    private static TokenBucketRateLimiterOptions Bucket(int perSecond, int burst) => new()
    {
        TokenLimit = burst,
        TokensPerPeriod = perSecond,
        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
        QueueLimit = 0,
        AutoReplenishment = false,
    };
}

using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>
/// Probes: <c>/health</c> (liveness: the process answers; checks nothing) and <c>/ready</c> (readiness: storage
/// is migrated and answers). Both answer GET and HEAD only, with the report as JSON, 503 when unhealthy, so an
/// operator who reads a 503 also reads which dependency failed and why.
/// </summary>
internal static class HealthApi
{
    public const string ReadyTag = "ready";

    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapRead("/health", (HealthCheckService health, HttpContext context) => ReportAsync(health, _ => false, context))
            .WithTags("Health")
            .WithSummary("Liveness: 200 while the process runs")
            .Produces<HealthReportResponse>()
            .AllowAnonymous();
        app.MapRead("/ready", (HealthCheckService health, HttpContext context) => ReportAsync(health, c => c.Tags.Contains(ReadyTag), context))
            .WithTags("Health")
            .WithSummary("Readiness: 200 when storage is migrated and answers, else 503 with the failing check")
            .Produces<HealthReportResponse>()
            .Produces<HealthReportResponse>(StatusCodes.Status503ServiceUnavailable)
            .AllowAnonymous();
        return app;
    }

    private static async Task<JsonHttpResult<HealthReportResponse>> ReportAsync(
        HealthCheckService health, Func<HealthCheckRegistration, bool> predicate, HttpContext context)
    {
        var report = await health.CheckHealthAsync(predicate, context.RequestAborted);
        // A cached "healthy" would hide an outage from the next probe.
        context.Response.Headers.CacheControl = "no-store, no-cache";
        var body = new HealthReportResponse(
            report.Status.ToString(),
            report.TotalDuration.TotalMilliseconds,
            [.. report.Entries.Select(e => new HealthCheckEntry(e.Key, e.Value.Status.ToString(), e.Value.Description, e.Value.Duration.TotalMilliseconds))]);
        return TypedResults.Json(body, statusCode: report.Status == HealthStatus.Unhealthy ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK);
    }
}

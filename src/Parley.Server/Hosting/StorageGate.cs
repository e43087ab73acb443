using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Hosting;

/// <summary>
/// Until the store is migrated, API and WebSocket requests get 503 with Retry-After instead of failing on missing
/// tables; endpoints marked <see cref="StorageGateExtensions.NeedsNoStorage{TBuilder}"/> (the client configuration) answer regardless.
/// </summary>
internal sealed class StorageGate(RequestDelegate next, StorageState state)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var path = context.Request.Path;
        if (state.IsReady || !(path.StartsWithSegments("/api") || path.StartsWithSegments("/ws"))
            || context.GetEndpoint()?.Metadata.GetMetadata<NoStorageMetadata>() is not null)
        {
            await next(context);
            return;
        }

        context.Response.Headers.RetryAfter = "5";
        await ApiResults.Problem(new ApiError(503, ErrorCodes.ServiceUnavailable, "Storage is starting or unreachable; retry shortly.")).ExecuteAsync(context);
    }
}

internal sealed class NoStorageMetadata;

internal static class StorageGateExtensions
{
    /// <summary>The endpoint touches no database: it keeps answering while storage is starting or unreachable.</summary>
    public static TBuilder NeedsNoStorage<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new NoStorageMetadata());
}

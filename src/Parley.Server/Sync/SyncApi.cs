using Microsoft.AspNetCore.Http.HttpResults;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Sync;

internal static class SyncApi
{
    public static IEndpointRouteBuilder MapSync(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1/sync").RequireAuthorization().WithTags("Sync").ProducesProblems();
        api.MapRead("/", ReadAsync)
            .WithIntegerQuery("limit", 1, SyncPages.MaxPageSize, SyncPages.DefaultPageSize)
            .WithSummary("Events the device missed after its cursor (docs/delivery.md)")
            .WithDescription("The same frames the WebSocket carries, in the same order; 410 cursor_expired when the cursor cannot be resumed.")
            .ProducesProblem(StatusCodes.Status410Gone);
        api.MapRead("/cursor", CurrentAsync).WithSummary("The current stream position, to follow changes from now");
        return app;
    }

    public static IHostApplicationBuilder AddSync(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<DeliveryOptions>().BindConfiguration(DeliveryOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<StreamCursors>();
        builder.Services.AddSingleton<EventFrameBuilder>();
        builder.Services.AddSingleton<IGapFiller, GapFiller>();
        builder.Services.AddSingleton<SyncPages>();
        builder.Services.AddSingleton<CatchUp>();
        builder.Services.AddSingleton<CursorAdvancer>();
        builder.Services.AddSingleton<SocketDeliveries>();
        builder.Services.AddHostedService<StreamSequencer>();
        builder.Services.AddHostedService<CursorTicker>();
        return builder;
    }

    private static async Task<Results<Ok<SyncPage>, ProblemHttpResult>> ReadAsync(
        Caller caller, string? cursor, string? limit, SyncPages pages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await pages.ReadPageAsync(caller, cursor, limit, cancellationToken));

    private static async Task<Ok<CursorResponse>> CurrentAsync(StreamCursors cursors, CancellationToken cancellationToken) =>
        TypedResults.Ok(new CursorResponse((await cursors.CurrentAsync(cancellationToken)).Encode()));
}

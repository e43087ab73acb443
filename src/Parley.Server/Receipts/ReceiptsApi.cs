using Microsoft.AspNetCore.Http.HttpResults;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Receipts;

internal static class ReceiptsApi
{
    /// <summary>Read receipts, and delivered reports written in batches by <see cref="DeliveryTracker"/>.</summary>
    public static IHostApplicationBuilder AddReceipts(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<ReceiptService>();
        builder.Services.AddSingleton<DeliveryTracker>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliveryTracker>());
        return builder;
    }

    public static IEndpointRouteBuilder MapReceipts(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/messages/{id}/read", MarkReadAsync)
            .RequireAuthorization()
            .ProducesProblems()
            .WithTags("Receipts")
            .WithSummary("Mark everything up to and including this message as read")
            .WithDescription("Watermarks only move forward: an older message is a no-op (200). Read implies delivered.");
        return app;
    }

    private static async Task<Results<Ok<ReadState>, ProblemHttpResult>> MarkReadAsync(
        Caller caller, string id, ReceiptService receipts, CancellationToken cancellationToken) =>
        ApiResults.Ok(await receipts.MarkReadAsync(caller, id, "id", cancellationToken));
}

using Microsoft.AspNetCore.Http.HttpResults;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;

namespace Parley.Server.Receipts;

internal static class ReceiptsApi
{
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
        ApiResults.Ok(await receipts.MarkReadAsync(caller, id, cancellationToken));
}

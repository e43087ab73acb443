using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Presence;

internal static class PresenceApi
{
    public static IEndpointRouteBuilder MapUserPresence(this IEndpointRouteBuilder app)
    {
        app.MapRead("/api/v1/users/{user_id}/presence", GetAsync)
            .RequireAuthorization()
            .ProducesProblems()
            .WithTags("Presence")
            .WithSummary("Whether a user is online, or when they were last seen")
            .WithDescription(
                "Online while any device of the user is connected to any instance. Only for users who share a conversation with the caller " +
                "(and the caller); anyone else is 404.");
        return app;
    }

    private static async Task<Results<Ok<UserPresenceView>, ProblemHttpResult>> GetAsync(
        HttpContext context, Caller caller, [FromRoute(Name = "user_id")] string id, PresenceService presence, CancellationToken cancellationToken)
    {
        var result = await presence.GetAsync(caller, Identifiers.UserIdFromPath(context, id, fromEnd: 1), cancellationToken);
        return result.IsSuccess ? TypedResults.Ok(result.Value!) : ApiResults.Problem(result.Error!);
    }
}

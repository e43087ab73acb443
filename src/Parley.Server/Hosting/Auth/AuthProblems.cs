using Microsoft.AspNetCore.Mvc;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting.Auth;

internal static class AuthProblems
{
    /// <summary>Every 401 is a ProblemDetails with code <c>unauthenticated</c> and the reason authentication failed.</summary>
    public static async Task WriteChallengeAsync(HttpContext context, string detail)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        var problems = context.RequestServices.GetRequiredService<IProblemDetailsService>();
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = "Unauthenticated",
                Detail = detail,
                Extensions = { ["code"] = ErrorCodes.Unauthenticated },
            },
        });
    }
}

using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.WebUtilities;

namespace Parley.Server.Hosting;

internal static class ApiResults
{
    /// <summary>RFC 9457 ProblemDetails with the stable <c>code</c> (and per-field <c>errors</c> for validation).</summary>
    public static ProblemHttpResult Problem(ApiError error)
    {
        var problem = error.Errors is null
            ? new ProblemDetails()
            : new HttpValidationProblemDetails(error.Errors.ToDictionary(e => e.Key, e => e.Value));
        problem.Status = error.Status;
        problem.Title = ReasonPhrases.GetReasonPhrase(error.Status);
        problem.Detail = error.Message;
        problem.Extensions["code"] = error.Code;
        return TypedResults.Problem(problem);
    }
}

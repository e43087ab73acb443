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

    /// <summary>200 with the value, or the error as ProblemDetails.</summary>
    public static Results<Ok<T>, ProblemHttpResult> Ok<T>(Result<T> result) =>
        result.IsSuccess ? TypedResults.Ok(result.Value!) : Problem(result.Error!);

    /// <summary>Documents, in the OpenAPI description, the ProblemDetails answers every API endpoint may give.</summary>
    public static TBuilder ProducesProblems<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
    {
        foreach (var status in CommonProblemStatuses)
        {
            builder.ProducesProblem(status);
        }

        builder.ProducesValidationProblem();
        return builder;
    }

    private static readonly int[] CommonProblemStatuses =
    [
        StatusCodes.Status401Unauthorized, StatusCodes.Status403Forbidden, StatusCodes.Status404NotFound, StatusCodes.Status409Conflict,
        StatusCodes.Status413PayloadTooLarge, StatusCodes.Status415UnsupportedMediaType, StatusCodes.Status429TooManyRequests,
        StatusCodes.Status503ServiceUnavailable,
    ];
}

using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>
/// Every error response is ProblemDetails with a <c>code</c>: endpoint results (<see cref="ApiResults"/>),
/// framework status codes (404/405/401/413/415/429), and exceptions (one handler, here). Not covered, and documented
/// in docs/errors.md: what Kestrel refuses while parsing the request line and headers (400/414/431/505), answered
/// with an empty body before any middleware exists for the request.
/// </summary>
internal static partial class ErrorHandling
{
    public static IHostApplicationBuilder AddErrorHandling(this IHostApplicationBuilder builder)
    {
        builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            var problem = context.ProblemDetails;
            var status = problem.Status ?? context.HttpContext.Response.StatusCode;
            problem.Title ??= ReasonPhrases.GetReasonPhrase(status);
            problem.Extensions.TryAdd("code", ErrorCodes.ForStatus(status));
            if (problem.Extensions.Remove("traceId", out var traceId))
            {
                problem.Extensions["trace_id"] = traceId;
            }

            problem.Extensions["request_id"] = context.HttpContext.TraceIdentifier;
        });
        // After the framework's writer, so it only answers the clients that one declines.
        builder.Services.AddSingleton<IProblemDetailsWriter, JsonFallbackProblemDetailsWriter>();
        builder.Services.AddExceptionHandler<ParleyExceptionHandler>();
        // Malformed bodies, parameters and content types throw BadHttpRequestException, which the handler maps.
        builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        return builder;
    }

    public static WebApplication UseErrorHandling(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        return app;
    }

    /// <summary>
    /// The framework's writer declines a client whose Accept header leaves out JSON (<c>text/plain</c>, <c>text/html</c>):
    /// the 401 and 429 writers then failed with a 500, and other errors fell back to text/plain without a code.
    /// Parley's API answers in JSON only, so those clients get the same ProblemDetails.
    /// </summary>
    private sealed class JsonFallbackProblemDetailsWriter(
        IOptions<ProblemDetailsOptions> options, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json) : IProblemDetailsWriter
    {
        public bool CanWrite(ProblemDetailsContext context) => true;

        public ValueTask WriteAsync(ProblemDetailsContext context)
        {
            var http = context.HttpContext;
            var problem = context.ProblemDetails;
            problem.Status ??= http.Response.StatusCode;
            problem.Extensions.TryAdd("traceId", Activity.Current?.Id ?? http.TraceIdentifier);
            options.Value.CustomizeProblemDetails?.Invoke(context);
            var typeInfo = json.Value.SerializerOptions.GetTypeInfo(problem.GetType());
            return new ValueTask(http.Response.WriteAsJsonAsync(problem, typeInfo, "application/problem+json", http.RequestAborted));
        }
    }

    private sealed partial class ParleyExceptionHandler(IProblemDetailsService problems, ILogger<ParleyExceptionHandler> logger) : IExceptionHandler
    {
        /// <summary>The request's charset when .NET has no encoding of that name; null otherwise.</summary>
        private static string? UnknownCharset(HttpRequest request)
        {
            if (!Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || type.Charset.Value is not { } charset)
            {
                return null;
            }

            try
            {
                _ = System.Text.Encoding.GetEncoding(charset.Trim('"'));
                return null;
            }
            catch (ArgumentException)
            {
                return charset;
            }
        }

        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            var (status, code, detail) = exception switch
            {
                BadHttpRequestException bad when bad.StatusCode == StatusCodes.Status413PayloadTooLarge =>
                    (bad.StatusCode, ErrorCodes.PayloadTooLarge, "The request body is too large."),
                BadHttpRequestException bad => (bad.StatusCode, ErrorCodes.ForStatus(bad.StatusCode), Describe(bad)),
                JsonException json => (StatusCodes.Status400BadRequest, ErrorCodes.InvalidRequest, "The body is not valid JSON: " + JsonErrors.Describe(json)),
                // The body reader cannot decode a charset .NET does not know (Content-Type: application/json; charset=x-foo).
                InvalidOperationException when UnknownCharset(httpContext.Request) is { } charset =>
                    (StatusCodes.Status415UnsupportedMediaType, ErrorCodes.UnsupportedMediaType,
                        $"The body's charset '{charset}' is not supported: send JSON in UTF-8 (Content-Type: application/json)."),
                // As a rule nothing was committed (a COMMIT cut off is the exception: errors.md); only a database that is unreachable, busy or shutting down is worth a retry (503).
                System.Data.Common.DbException db => ApiError.ForStorageFailure(db) is var error ? (error.Status, error.Code, error.Message) : default,
                OperationCanceledException when httpContext.RequestAborted.IsCancellationRequested =>
                    (499, ErrorCodes.InvalidRequest, "The client closed the request."),
                _ => (StatusCodes.Status500InternalServerError, ErrorCodes.InternalError, "An unexpected error occurred."),
            };

            if (status >= 500)
            {
                Log.Unhandled(logger, httpContext.Request.Method, httpContext.Request.Path, exception);
            }
            else if (exception is System.Data.Common.DbException)
            {
                Log.StorageRefusedValue(logger, httpContext.Request.Method, httpContext.Request.Path, exception);
            }

            if (status == StatusCodes.Status503ServiceUnavailable)
            {
                httpContext.Response.Headers.RetryAfter = "1";
            }

            httpContext.Response.StatusCode = status;
            return await problems.TryWriteAsync(new ProblemDetailsContext
            {
                HttpContext = httpContext,
                Exception = exception,
                ProblemDetails = new ProblemDetails
                {
                    Status = status,
                    Title = ReasonPhrases.GetReasonPhrase(status),
                    Detail = detail,
                    Extensions = { ["code"] = code },
                },
            });
        }

        /// <summary>The framework's message plus the JSON reader's reason (path and position), which says what to fix.</summary>
        private static string Describe(BadHttpRequestException exception) =>
            exception.InnerException is JsonException json ? $"{exception.Message} {JsonErrors.Describe(json)}" : exception.Message;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "Unhandled exception for {Method} {Path}")]
        public static partial void Unhandled(ILogger logger, string method, string path, Exception exception);

        [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Storage refused a value of {Method} {Path}: validation let it through")]
        public static partial void StorageRefusedValue(ILogger logger, string method, string path, Exception exception);
    }
}

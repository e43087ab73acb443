using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;

namespace Parley.Server.WebApp;

/// <summary>
/// The chat app (clients/web, built into WebApp/bundle) at <c>/app</c> when <c>App:Enabled</c> (on by default in
/// Development only), with the two things it asks of the server: how to sign in (<c>settings.json</c>), and, where the
/// server signs with the documented development key, a token for any user id (<c>POST /app/token</c>).
/// </summary>
internal static class WebAppSetup
{
    public const string BasePath = "/app";

    /// <summary>
    /// The app loads its own scripts and styles only, talks to this origin only (REST, and the WebSocket, which CSP
    /// Level 3's 'self' covers), and is never framed. No inline script or style is needed: the bundle has none.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    /// <summary>App tokens are short-lived: the app asks for a fresh one when the server refuses or the socket closes with 4003.</summary>
    public static readonly TimeSpan DevelopmentTokenLifetime = TimeSpan.FromHours(1);

    public static IHostApplicationBuilder AddWebApp(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<WebAppOptions>().BindConfiguration(WebAppOptions.SectionName).ValidateOnStart();
        builder.Services.AddSingleton<WebAppFiles>();
        return builder;
    }

    public static WebApplication MapWebApp(this WebApplication app)
    {
        if (!app.Services.GetRequiredService<IOptions<WebAppOptions>>().Value.IsEnabled(app.Environment))
        {
            return app;
        }

        var auth = app.Services.GetRequiredService<IOptions<AuthOptions>>().Value;
        var keys = app.Services.GetRequiredService<JwtKeys>();
        var developmentTokens = auth.Mode == AuthMode.Jwt && keys.IsDevelopmentKey;
        var settings = new WebAppSettings(auth.Mode == AuthMode.Header ? "gateway" : developmentTokens ? "development" : "jwt");

        var group = app.MapGroup(BasePath).AllowAnonymous().ExcludeFromDescription().NeedsNoStorage();

        // Relative links in index.html resolve against /app/, not against /: /app redirects there. Routing matches
        // both spellings here, so the trailing slash decides.
        app.MapRead(BasePath, Results<FileResult, RedirectHttpResult, ProblemHttpResult> (HttpContext context, WebAppFiles files) =>
        {
            if (!context.Request.Path.Value!.EndsWith('/'))
            {
                return TypedResults.Redirect($"{context.Request.PathBase}{BasePath}/{context.Request.QueryString}", permanent: true);
            }

            return files.Find("index.html") is { } index ? new FileResult(index) : ApiResults.Problem(ApiError.NotFound("The app"));
        })
            .AllowAnonymous().ExcludeFromDescription().NeedsNoStorage();

        group.MapRead("/settings.json", (HttpContext context) =>
        {
            SecurityHeaders(context.Response);
            context.Response.Headers.CacheControl = "no-store";
            return TypedResults.Json(settings, WebAppJson.Default.WebAppSettings);
        });

        if (developmentTokens)
        {
            group.MapPost("/token", Results<JsonHttpResult<DevelopmentToken>, ProblemHttpResult> (DevelopmentTokenRequest request, HttpContext context, TimeProvider time) =>
            {
                SecurityHeaders(context.Response);
                context.Response.Headers.CacheControl = "no-store";
                if (!Identifiers.IsValidUserId(request.UserId))
                {
                    return ApiResults.Problem(ApiError.Invalid("user_id", "must be 1 to 128 characters without whitespace or control characters"));
                }

                if (request.UserId == auth.ServiceUserId)
                {
                    return ApiResults.Problem(ApiError.Invalid("user_id", AuthSetup.ReservedUserId(auth)));
                }

                var now = time.GetUtcNow();
                var token = keys.CreateToken(new Dictionary<string, object> { [Caller.UserIdClaim] = request.UserId! }, now.UtcDateTime, DevelopmentTokenLifetime);
                return TypedResults.Json(new DevelopmentToken(token, request.UserId!, now + DevelopmentTokenLifetime), WebAppJson.Default.DevelopmentToken);
            }).Accepts<DevelopmentTokenRequest>("application/json");
        }

        group.MapRead("/{**path}", Results<FileResult, ProblemHttpResult> (string? path, WebAppFiles files) =>
            files.Find(string.IsNullOrEmpty(path) ? "index.html" : path) is { } file
                ? new FileResult(file)
                : ApiResults.Problem(ApiError.NotFound("The file")));
        return app;
    }

    private static void SecurityHeaders(HttpResponse response)
    {
        var headers = response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        headers.XFrameOptions = "DENY";
    }

    /// <summary>
    /// One file: revalidated by ETag (304), gzipped when the client takes it. Hashed assets are cached for a year
    /// (their name changes with their content); index.html and the other unhashed files are revalidated every time,
    /// so a new server version takes effect on the next load.
    /// </summary>
    internal sealed class FileResult(WebAppFile file) : IResult
    {
        public async Task ExecuteAsync(HttpContext context)
        {
            var response = context.Response;
            SecurityHeaders(response);
            response.Headers.ETag = file.ETag;
            response.Headers.CacheControl = file.Immutable ? "public, max-age=31536000, immutable" : "no-cache";
            response.Headers.Vary = HeaderNames.AcceptEncoding;
            if (context.Request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(tag => tag.Trim() == file.ETag || tag.Trim() == "*")))
            {
                response.StatusCode = StatusCodes.Status304NotModified;
                return;
            }

            var body = file.Content;
            if (file.Gzipped is { } gzipped && AcceptsGzip(context.Request))
            {
                body = gzipped;
                response.Headers.ContentEncoding = "gzip";
            }

            response.ContentType = file.ContentType;
            response.ContentLength = body.Length;
            if (!HttpMethods.IsHead(context.Request.Method))
            {
                await response.Body.WriteAsync(body, context.RequestAborted);
            }
        }

        private static bool AcceptsGzip(HttpRequest request) =>
            request.Headers.AcceptEncoding.Any(v => v is not null && v.Split(',').Any(e =>
            {
                var parts = e.Split(';', StringSplitOptions.TrimEntries);
                return parts[0].Equals("gzip", StringComparison.OrdinalIgnoreCase) && !parts.Skip(1).Any(p => p.Replace(" ", "", StringComparison.Ordinal) is "q=0" or "q=0.0" or "q=0.00" or "q=0.000");
            }));
    }
}

using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Scalar.AspNetCore;

namespace Parley.Server.Hosting;

/// <summary>Cross-cutting set-up shared by every endpoint: JSON, errors, limits, CORS, logging scopes, health, OpenAPI.</summary>
internal static partial class HostingSetup
{
    private static readonly string[] SecuritySchemes = ["bearer", "user_header", "service_api_key"];

    private static bool ListenersChosen(IConfiguration configuration) =>
        !string.IsNullOrEmpty(configuration["urls"]) || !string.IsNullOrEmpty(configuration["http_ports"])
        || !string.IsNullOrEmpty(configuration["https_ports"]) || configuration.GetSection("Kestrel:Endpoints").Exists();

    public static IHostApplicationBuilder AddParleyHosting(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        if (builder is WebApplicationBuilder web && !ListenersChosen(builder.Configuration))
        {
            // Parley's port, where nothing chose one (--urls, URLS, ASPNETCORE_URLS, the HTTP(S)_PORTS variables, Kestrel
            // endpoints). Not a Urls key in appsettings.json: that would override ASPNETCORE_URLS, which the host reads first.
            web.WebHost.UseUrls(builder.Environment.IsDevelopment() ? "http://localhost:8083" : "http://*:8083");
        }

        services.AddSingleton(TimeProvider.System);
        services.AddLogRedaction();
        services.ConfigureHttpJsonOptions(options =>
        {
            var json = options.SerializerOptions;
            json.TypeInfoResolverChain.Insert(0, ParleyJsonContext.Default);
            json.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            json.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
            json.AllowDuplicateProperties = false;
            json.Converters.Add(new UtcTimestampConverter());
        });

        services.AddOptions<LimitsOptions>().BindConfiguration(LimitsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<CorsSettings>().BindConfiguration(CorsSettings.SectionName).ValidateOnStart();
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<LimitsOptions>>((kestrel, limits) =>
        {
            kestrel.Limits.MaxRequestBodySize = limits.Value.MaxRequestBytes;
            kestrel.AddServerHeader = false;
        });

        builder.AddErrorHandling();
        builder.AddRateLimits();
        services.AddCors();
        services.AddOptions<Microsoft.AspNetCore.Cors.Infrastructure.CorsOptions>().Configure<IOptions<CorsSettings>>((cors, settings) =>
            cors.AddDefaultPolicy(policy =>
            {
                if (settings.Value.AllowedOrigins.Count > 0)
                {
                    policy.WithOrigins([.. settings.Value.AllowedOrigins]).AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("Retry-After", "Location");
                }
            }));
        services.AddOptions<WebSocketOptions>().Configure<IOptions<CorsSettings>>((ws, settings) =>
        {
            // Browsers send Origin on WebSocket handshakes; with origins configured, others are refused (403).
            foreach (var origin in settings.Value.AllowedOrigins)
            {
                ws.AllowedOrigins.Add(origin);
            }
        });

        services.AddHealthChecks().AddCheck<StorageHealthCheck>("storage", tags: [HealthApi.ReadyTag]);
        services.AddOpenApi(options => options.AddOperationTransformer((operation, context, _) =>
        {
            // The document requires one of the schemes everywhere; an anonymous endpoint (config, health) overrides that
            // with an empty list, which OpenAPI reads as "no authentication", so API explorers do not ask for a token.
            if (context.Description.ActionDescriptor.EndpointMetadata.OfType<Microsoft.AspNetCore.Authorization.IAllowAnonymous>().Any())
            {
                operation.Security = [];
            }

            return Task.CompletedTask;
        }).AddOperationTransformer(IntegerQuery.Describe).AddOperationTransformer((operation, _, _) =>
        {
            // Bodies are bound as nullable so that a missing one gets Parley's own 400, but every endpoint needs its body.
            if (operation.RequestBody is OpenApiRequestBody body)
            {
                body.Required = true;
            }

            return Task.CompletedTask;
        }).AddOperationTransformer(OpenApiSchemas.DescribeOperation).AddSchemaTransformer(OpenApiSchemas.Describe).AddSchemaTransformer((schema, context, _) =>
        {
            // Every problem Parley answers carries its stable code (docs/errors.md) and the request's trace id.
            if (context.JsonTypeInfo.Type == typeof(Microsoft.AspNetCore.Mvc.ProblemDetails)
                || context.JsonTypeInfo.Type == typeof(HttpValidationProblemDetails))
            {
                schema.Properties ??= new Dictionary<string, IOpenApiSchema>();
                schema.Properties["code"] = new OpenApiSchema
                {
                    Type = JsonSchemaType.String, Description = "Stable, machine-readable error code (docs/errors.md), e.g. not_found, validation_failed.",
                };
                // The names ErrorHandling writes (snake_case, as every body), not the framework's own traceId.
                schema.Properties.Remove("traceId");
                schema.Properties["trace_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The request's trace id (a W3C traceparent where tracing runs), as in the server's log." };
                schema.Properties["request_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The server's id of the request (its connection and request number)." };
                schema.Required ??= new HashSet<string>();
                schema.Required.Add("code");
            }

            return Task.CompletedTask;
        }).AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Parley API";
            document.Info.Description = "Real-time messaging: REST under /api/v1, WebSocket at /ws (see docs/websocket.md). Every GET also answers HEAD.";
            // Each read is listed once, as its GET (ReadRoutes maps HEAD beside it).
            foreach (var path in document.Paths.Values.OfType<OpenApiPathItem>())
            {
                path.Operations?.Remove(HttpMethod.Head);
            }

            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                BearerFormat = "JWT",
                Description = "Auth:Mode=Jwt. The user id is the token's sub claim.",
            };
            document.Components.SecuritySchemes["user_header"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = HeaderAuthenticationHandler.UserIdHeader,
                Description = "Auth:Mode=Header: the user id set by a trusted gateway.",
            };
            document.Components.SecuritySchemes["service_api_key"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = ApiKeyAuthenticationHandler.HeaderName,
                Description = "The application's back end (service role).",
            };
            document.Security ??= [];
            foreach (var scheme in SecuritySchemes)
            {
                document.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(scheme, document)] = [] });
            }

            return Task.CompletedTask;
        }));
        return builder;
    }

    public static WebApplication UseParleyHosting(this WebApplication app)
    {
        app.UseErrorHandling();
        app.UseCors();
        app.UseWebSockets();
        app.UseAuthentication();
        var requests = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Parley.Requests");
        app.Use((context, next) => WithCallerScopeAsync(context, next, requests));
        app.UseRateLimiter();
        app.UseAuthorization();
        app.UseMiddleware<StorageGate>();

        app.MapOpenApi().AllowAnonymous();
        // The reference page of a self-hosted server: no vendor toolbar (deploy, SDK generation), AI agent, MCP or telemetry.
        app.MapScalarApiReference(options => options.HideDeveloperTools().DisableAgent().DisableMcp().DisableTelemetry()).AllowAnonymous();
        app.MapHealth();
        return app;
    }

    /// <summary>Every log line of an authenticated request carries the user id (request ids come from the host's own scope).</summary>
    private static async Task WithCallerScopeAsync(HttpContext context, RequestDelegate next, ILogger logger)
    {
        var caller = Caller.From(context);
        if (caller is null)
        {
            await next(context);
            return;
        }

        using (logger.BeginScope(new Dictionary<string, object> { ["UserId"] = caller.UserId }))
        {
            await next(context);
        }
    }
}

internal sealed class CorsSettings
{
    public const string SectionName = "Cors";

    /// <summary>Browser origins allowed to call the API and open WebSockets (e.g. https://app.example.com). Empty: none.</summary>
    public List<string> AllowedOrigins { get; set; } = [];
}

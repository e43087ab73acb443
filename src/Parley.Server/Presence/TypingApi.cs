using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Presence;

internal static class TypingApi
{
    /// <summary>Typing indicators, which expire on their own (<see cref="TypingTracker"/>), and who is online (<see cref="PresenceService"/>).</summary>
    public static IHostApplicationBuilder AddPresence(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<PresenceOptions>().BindConfiguration(PresenceOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<PresenceService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<PresenceService>());
        builder.Services.AddSingleton<TypingTracker>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<TypingTracker>());
        return builder;
    }

    public static IEndpointRouteBuilder MapPresence(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/conversations/{id}/typing", SetTypingAsync)
            .RequireAuthorization()
            .ProducesProblems()
            .WithTags("Presence")
            .WithSummary("Start or stop the caller's typing indicator")
            .WithDescription("Refresh is_typing: true at least every few seconds; without a refresh the indicator expires after 5 s.");
        app.MapUserPresence();
        return app;
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> SetTypingAsync(
        Caller caller, string id, [FromBody] TypingRequest? body, TypingTracker typing, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryParseUuid(id, out var conversationId))
        {
            return ApiResults.Problem(ApiError.InvalidId("id"));
        }

        if (body is null)
        {
            return ApiResults.Problem(ApiError.BodyRequired());
        }

        if (body.IsTyping is not { } isTyping)
        {
            return ApiResults.Problem(ApiError.Invalid("is_typing", "'is_typing' is required (true or false)."));
        }

        return await typing.UpdateAsync(caller, conversationId, isTyping, cancellationToken) is { } error
            ? ApiResults.Problem(error)
            : TypedResults.NoContent();
    }
}

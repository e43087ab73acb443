using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;

namespace Parley.Server.Conversations;

internal static class ConversationsApi
{
    /// <summary>Conversations, their members, and who may touch them (used by every other feature).</summary>
    public static IHostApplicationBuilder AddConversations(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<ConversationLocks>();
        builder.Services.AddSingleton<MembershipRemovals>();
        builder.Services.AddSingleton<ConversationAccess>();
        builder.Services.AddSingleton<ConversationService>();
        return builder;
    }

    public static IEndpointRouteBuilder MapConversations(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1/conversations").RequireAuthorization().WithTags("Conversations").ProducesProblems();
        api.MapPost("/", CreateAsync)
            .WithSummary("Create a conversation")
            .WithDescription("201 with a new conversation; 200 with the existing one when a direct conversation of the pair exists.");
        api.MapRead("/", ListAsync).WithIntegerQuery("limit", 1, ConversationService.MaxPageSize, ConversationService.DefaultPageSize).WithSummary("The caller's conversations, most recent activity first");
        api.MapRead("/{id}", GetAsync).WithSummary("Get a conversation");
        api.MapPost("/{id}/participants", AddParticipantsAsync).WithSummary("Add members to a group (owner and admins)");
        api.MapPatch("/{id}/participants/{user_id}", UpdateParticipantAsync).WithSummary("Change a member's role");
        api.MapDelete("/{id}/participants/{user_id}", RemoveParticipantAsync)
            .WithSummary("Remove a member (owner and admins), or leave with one's own id");
        return app;
    }

    private static async Task<Results<Created<Conversation>, Ok<Conversation>, ProblemHttpResult>> CreateAsync(
        Caller caller, [FromBody] CreateConversationRequest? body, ConversationService conversations, CancellationToken cancellationToken)
    {
        var result = await conversations.CreateAsync(caller, body, cancellationToken);
        if (!result.IsSuccess)
        {
            return ApiResults.Problem(result.Error!);
        }

        var (conversation, created) = result.Value;
        return created ? TypedResults.Created($"/api/v1/conversations/{conversation.Id}", conversation) : TypedResults.Ok(conversation);
    }

    private static async Task<Results<Ok<ConversationList>, ProblemHttpResult>> ListAsync(
        Caller caller, string? limit, string? cursor, ConversationService conversations, CancellationToken cancellationToken) =>
        ApiResults.Ok(await conversations.ListAsync(caller, limit, cursor, cancellationToken));

    private static async Task<Results<Ok<Conversation>, ProblemHttpResult>> GetAsync(
        Caller caller, string id, ConversationService conversations, CancellationToken cancellationToken) =>
        ApiResults.Ok(await conversations.GetAsync(caller, id, cancellationToken));

    private static async Task<Results<Ok<Conversation>, ProblemHttpResult>> AddParticipantsAsync(
        Caller caller, string id, [FromBody] AddParticipantsRequest? body, ConversationService conversations, CancellationToken cancellationToken) =>
        ApiResults.Ok(await conversations.AddParticipantsAsync(caller, id, body, cancellationToken));

    private static async Task<Results<Ok<Participant>, ProblemHttpResult>> UpdateParticipantAsync(
        HttpContext context, Caller caller, string id, [FromRoute(Name = "user_id")] string userId, [FromBody] UpdateParticipantRequest? body, ConversationService conversations,
        CancellationToken cancellationToken) =>
        ApiResults.Ok(await conversations.UpdateParticipantAsync(
            caller, id, Identifiers.UserIdFromPath(context, userId, fromEnd: 0), body, cancellationToken));

    private static async Task<Results<NoContent, ProblemHttpResult>> RemoveParticipantAsync(
        HttpContext context, Caller caller, string id, [FromRoute(Name = "user_id")] string userId, ConversationService conversations, CancellationToken cancellationToken) =>
        await conversations.RemoveParticipantAsync(caller, id, Identifiers.UserIdFromPath(context, userId, fromEnd: 0), cancellationToken) is { } error
            ? ApiResults.Problem(error)
            : TypedResults.NoContent();

}

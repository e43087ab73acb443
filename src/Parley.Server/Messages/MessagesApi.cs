using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Messages;

internal static class MessagesApi
{
    public static IHostApplicationBuilder AddMessages(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<MessageService>();
        return builder;
    }

    public static IEndpointRouteBuilder MapMessages(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1").RequireAuthorization().WithTags("Messages").ProducesProblems();
        api.MapPost("/messages", SendAsync)
            .RequireSendRate()
            .WithSummary("Send a message")
            .WithDescription("201 with the new message; 200 with the original when client_message_id repeats an earlier send.");
        api.MapRead("/messages/{id}", GetAsync).WithSummary("Get a message (a deleted one is a tombstone)");
        // An edit is written like a send (a new seq, a stored version, a frame to every member): it takes from the same
        // budget, or edits would be a way around the send rate.
        api.MapPut("/messages/{id}", EditAsync).RequireSendRate().WithSummary("Edit a message (sender only, inside the edit window)");
        api.MapDelete("/messages/{id}", DeleteAsync).WithSummary("Delete a message for everyone (sender or group admin)");
        api.MapRead("/messages/{id}/edits", GetEditsAsync).WithSummary("Earlier versions of an edited message");
        api.MapRead("/conversations/{id}/messages", ListAsync)
            .WithIntegerQuery("limit", 1, MessageService.MaxPageSize, MessageService.DefaultPageSize)
            .WithIntegerQuery("before", 1)
            .WithIntegerQuery("after", 0)
            .WithSummary("Message history, paged by seq")
            .WithDescription("Without before/after: the newest page, newest first. before=N: older than seq N, newest first. after=N: newer than seq N, oldest first.");
        return app;
    }

    private static async Task<Results<Created<Message>, Ok<Message>, ProblemHttpResult>> SendAsync(
        Caller caller, [FromBody] SendMessageRequest? body, MessageService messages, CancellationToken cancellationToken)
    {
        var result = await messages.SendAsync(caller, body, cancellationToken);
        if (!result.IsSuccess)
        {
            return ApiResults.Problem(result.Error!);
        }

        var sent = result.Value!;
        return sent.Created ? TypedResults.Created($"/api/v1/messages/{sent.Message.Id}", sent.Message) : TypedResults.Ok(sent.Message);
    }

    private static async Task<Results<Ok<Message>, ProblemHttpResult>> GetAsync(
        Caller caller, string id, MessageService messages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await messages.GetAsync(caller, id, cancellationToken));

    private static async Task<Results<Ok<Message>, ProblemHttpResult>> EditAsync(
        Caller caller, string id, [FromBody] EditMessageRequest? body, MessageService messages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await messages.EditAsync(caller, id, body, cancellationToken));

    private static async Task<Results<Ok<Message>, ProblemHttpResult>> DeleteAsync(
        Caller caller, string id, MessageService messages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await messages.DeleteAsync(caller, id, cancellationToken));

    private static async Task<Results<Ok<MessageEdits>, ProblemHttpResult>> GetEditsAsync(
        Caller caller, string id, MessageService messages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await messages.GetEditsAsync(caller, id, cancellationToken));

    private static async Task<Results<Ok<MessagePage>, ProblemHttpResult>> ListAsync(
        Caller caller, string id, string? limit, string? before, string? after, MessageService messages, CancellationToken cancellationToken) =>
        ApiResults.Ok(await messages.ListAsync(caller, id, limit, before, after, cancellationToken));

}

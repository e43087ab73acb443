using System.Text.Json.Nodes;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>
/// What the OpenAPI generator cannot see in Parley's endpoints and types: UUID path ids, the problems a read cannot give,
/// the type of timestamps and the closed sets of values.
/// </summary>
internal static class OpenApiSchemas
{
    private static readonly JsonNode[] MessageTypeValues = [.. MessageTypes.All.Order(StringComparer.Ordinal).Select(v => JsonValue.Create(v))];
    private static readonly JsonNode[] RoleValues = [JsonValue.Create(Roles.Owner), JsonValue.Create(Roles.Admin), JsonValue.Create(Roles.Member)];
    private static readonly JsonNode[] ConversationTypeValues = [JsonValue.Create(ConversationTypes.Direct), JsonValue.Create(ConversationTypes.Group)];

    private static readonly string[] BodyProblems = ["409", "413", "415"];

    public static Task DescribeOperation(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        // Path ids are conversation and message ids (user ids are named user_id): UUIDs.
        foreach (var parameter in operation.Parameters?.OfType<OpenApiParameter>() ?? [])
        {
            if (parameter.In == ParameterLocation.Path && parameter.Name == "id")
            {
                parameter.Schema = new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" };
            }
        }

        // A read takes no body: none of a body's problems.
        if (context.Description.HttpMethod == HttpMethods.Get)
        {
            foreach (var status in BodyProblems)
            {
                operation.Responses?.Remove(status);
            }
        }

        return Task.CompletedTask;
    }

    public static Task Describe(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken cancellationToken)
    {
        // Timestamps are written by Parley's own converter (RFC 3339 in UTC, milliseconds), which hides their type from the
        // generator: without this they have a format and no type, and generated clients take them for anything.
        var type = context.JsonTypeInfo.Type;
        if (type == typeof(DateTimeOffset) || type == typeof(DateTimeOffset?))
        {
            schema.Type = type == typeof(DateTimeOffset?) || IsNullable(context) ? JsonSchemaType.String | JsonSchemaType.Null : JsonSchemaType.String;
            schema.Format = "date-time";
        }

        if (context.JsonPropertyInfo is { } property && ValuesOf(property.DeclaringType, property.Name) is { } values)
        {
            schema.Enum = [.. values.Select(v => v.DeepClone())];
        }

        return Task.CompletedTask;
    }

    private static bool IsNullable(OpenApiSchemaTransformerContext context) =>
        context.JsonPropertyInfo?.PropertyType is { } propertyType && Nullable.GetUnderlyingType(propertyType) is not null;

    private static JsonNode[]? ValuesOf(Type declaringType, string name) => name switch
    {
        "message_type" => MessageTypeValues,
        "role" when declaringType == typeof(Participant) || declaringType == typeof(UpdateParticipantRequest) => RoleValues,
        "type" when declaringType == typeof(Conversation) || declaringType == typeof(CreateConversationRequest) => ConversationTypeValues,
        _ => null,
    };
}

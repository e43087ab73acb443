using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Parley.Server.Hosting;

/// <summary>
/// A query parameter that is an integer from <paramref name="Minimum"/> to <paramref name="Maximum"/> (<paramref
/// name="Default"/> when absent, if it has one). Such parameters are bound as text, so that a bad value gets Parley's
/// validation answer (naming the parameter and its range) instead of the framework's bare 400; this metadata gives the
/// OpenAPI document their real type.
/// </summary>
internal sealed record IntegerQuery(string Name, long Minimum, long Maximum, long? Default)
{
    /// <summary>Sets the schema of each documented integer query parameter of the operation.</summary>
    public static Task Describe(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        foreach (var integer in context.Description.ActionDescriptor.EndpointMetadata.OfType<IntegerQuery>())
        {
            if (operation.Parameters?.FirstOrDefault(p => p.In == ParameterLocation.Query && p.Name == integer.Name) is OpenApiParameter parameter)
            {
                parameter.Schema = new OpenApiSchema
                {
                    Type = JsonSchemaType.Integer,
                    Format = "int64",
                    Minimum = integer.Minimum.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Maximum = integer.Maximum == long.MaxValue ? null : integer.Maximum.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Default = integer.Default is { } value ? System.Text.Json.Nodes.JsonValue.Create(value) : null,
                };
            }
        }

        return Task.CompletedTask;
    }
}

internal static class IntegerQueryExtensions
{
    /// <summary>Documents the query parameter <paramref name="name"/> as an integer in the range (see <see cref="IntegerQuery"/>).</summary>
    public static RouteHandlerBuilder WithIntegerQuery(
        this RouteHandlerBuilder builder, string name, long minimum, long maximum = long.MaxValue, long? defaultValue = null) =>
        builder.WithMetadata(new IntegerQuery(name, minimum, maximum, defaultValue));
}

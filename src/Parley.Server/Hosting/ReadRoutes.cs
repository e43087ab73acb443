namespace Parley.Server.Hosting;

/// <summary>
/// Reads answer GET and HEAD (RFC 9110 §9.3.2: HEAD is GET without the body; Kestrel drops a HEAD response's body). A
/// minimal API's <c>MapGet</c> maps GET alone, so a monitor or cache that checks a URL with HEAD got 405.
/// </summary>
internal static class ReadRoutes
{
    private static readonly string[] Methods = [HttpMethods.Get, HttpMethods.Head];

    public static RouteHandlerBuilder MapRead(this IEndpointRouteBuilder app, string pattern, Delegate handler) =>
        app.MapMethods(pattern, Methods, handler);
}

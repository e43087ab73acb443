namespace Parley.Server.WebApp;

/// <summary>The chat app at <c>/app</c> (docs/configuration.md, "Web app").</summary>
internal sealed class WebAppOptions
{
    public const string SectionName = "App";

    /// <summary>Serve the app; unset: on in Development, off elsewhere.</summary>
    public bool? Enabled { get; set; }

    public bool IsEnabled(IHostEnvironment environment) => Enabled ?? environment.IsDevelopment();
}

using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Parley.Server.Observability;

/// <summary>The Prometheus scrape endpoint (<c>/metrics</c>) and who may read it.</summary>
internal sealed class MetricsOptions
{
    public const string SectionName = "Metrics";

    /// <summary>Where the metrics are served.</summary>
    public const string Path = "/metrics";

    /// <summary>Serve <c>/metrics</c>. Off: no scrape endpoint at all (the path answers 404 like any unknown one).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// A port of its own for <c>/metrics</c> (listened on every interface, beside the addresses of <c>Urls</c>); the path
    /// is then answered on that port only. Unset: on the server's own addresses.
    /// </summary>
    [Range(1, 65535)]
    public int? Port { get; set; }

    /// <summary>
    /// Client networks allowed to read <c>/metrics</c>, in CIDR notation (<c>10.0.0.0/8</c>, <c>fd00::/8</c>) or single
    /// addresses. Empty: loopback only (127.0.0.0/8 and ::1). Others get the 404 of an unknown path.
    /// </summary>
    public List<string> AllowedNetworks { get; set; } = [];
}

/// <summary>Traces, exported over OTLP when an endpoint is configured (none by default: no spans are recorded).</summary>
internal sealed class TelemetryOptions
{
    public const string SectionName = "Telemetry";

    public OtlpSettings Otlp { get; set; } = new();
}

internal sealed class OtlpSettings
{
    /// <summary>The collector, e.g. <c>http://otel-collector:4317</c> (gRPC) or <c>http://otel-collector:4318/v1/traces</c> (HTTP).</summary>
    public Uri? Endpoint { get; set; }

    public OtlpTransport Protocol { get; set; } = OtlpTransport.Grpc;
}

internal enum OtlpTransport
{
    Grpc,
    HttpProtobuf,
}

internal sealed class MetricsOptionsValidator : IValidateOptions<MetricsOptions>
{
    public ValidateOptionsResult Validate(string? name, MetricsOptions options)
    {
        var failures = new List<string>();
        for (var i = 0; i < options.AllowedNetworks.Count; i++)
        {
            if (!NetworkAllowList.TryParseNetwork(options.AllowedNetworks[i], out _))
            {
                failures.Add(
                    $"Metrics:AllowedNetworks:{i} is '{options.AllowedNetworks[i]}'; expected a network in CIDR notation with no bits set after the prefix " +
                    "(127.0.0.0/8, 10.1.0.0/16, ::1/128) or a single address.");
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

internal sealed class TelemetryOptionsValidator : IValidateOptions<TelemetryOptions>
{
    public ValidateOptionsResult Validate(string? name, TelemetryOptions options) =>
        options.Otlp.Endpoint is { } endpoint && (!endpoint.IsAbsoluteUri || endpoint.Scheme is not ("http" or "https"))
            ? ValidateOptionsResult.Fail($"Telemetry:Otlp:Endpoint is '{endpoint}'; expected an http or https URL such as http://otel-collector:4317.")
            : ValidateOptionsResult.Success;
}

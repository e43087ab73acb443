using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;

namespace Parley.Server.Fanout;

internal static class FanoutSetup
{
    /// <summary>
    /// The fan-out between writers and sockets: in-process (one instance, the default) or Redis (several instances,
    /// <c>Fanout:Provider=Redis</c> with <c>ConnectionStrings:Redis</c>), checked at start-up.
    /// </summary>
    public static IHostApplicationBuilder AddFanout(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<FanoutOptions>().BindConfiguration(FanoutOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<FanoutOptions>, FanoutOptionsValidator>();
        services.AddSingleton<InProcessFanout>();
        services.AddSingleton<RedisFanout>();
        services.AddSingleton<IFanout>(sp => UsesRedis(sp) ? sp.GetRequiredService<RedisFanout>() : sp.GetRequiredService<InProcessFanout>());
        services.AddHostedService<RedisFanoutLifetime>();
        services.AddHealthChecks().AddCheck<FanoutHealthCheck>("fanout", tags: [HealthApi.ReadyTag]);
        return builder;
    }

    private static bool UsesRedis(IServiceProvider services) =>
        services.GetRequiredService<IOptions<FanoutOptions>>().Value.Provider == FanoutProvider.Redis;

    /// <summary>Starts and stops the Redis fan-out when it is the configured one (nothing otherwise).</summary>
    private sealed class RedisFanoutLifetime(IServiceProvider services) : IHostedService
    {
        private RedisFanout? _started;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (!UsesRedis(services))
            {
                return Task.CompletedTask;
            }

            _started = services.GetRequiredService<RedisFanout>();
            return _started.StartAsync(cancellationToken);
        }

        public Task StopAsync(CancellationToken cancellationToken) => _started?.StopAsync(cancellationToken) ?? Task.CompletedTask;
    }

    /// <summary>What readiness says of the Redis fan-out (see <see cref="FanoutHealthCheck"/>).</summary>
    internal static HealthCheckResult Readiness(RedisFanout redis)
    {
        if (!redis.IsConnected)
        {
            return HealthCheckResult.Degraded(
                "Redis unreachable: live events reach only this instance's sockets; devices recover the rest through their cursors");
        }

        if (!redis.IsSubscribed)
        {
            return HealthCheckResult.Degraded(
                "Redis subscription down or refused: events from other instances do not reach this instance's sockets; devices recover them through their cursors");
        }

        return redis.RoutesPending is var pending and > 0
            ? HealthCheckResult.Degraded(
                $"Redis refused the routes of {pending} users with sockets here: events from other instances miss them until a liveness beat registers them")
            : HealthCheckResult.Healthy($"Redis connected (instance {redis.InstanceId})");
    }

    /// <summary>
    /// Readiness: the in-process fan-out is always healthy; the Redis one is Degraded (not Unhealthy: this instance
    /// still serves REST and its own sockets) while Redis is unreachable.
    /// </summary>
    private sealed class FanoutHealthCheck(IServiceProvider services) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            if (!UsesRedis(services))
            {
                return Task.FromResult(HealthCheckResult.Healthy("in-process (one instance)"));
            }

            return Task.FromResult(Readiness(services.GetRequiredService<RedisFanout>()));
        }
    }
}

internal sealed class FanoutOptionsValidator(IConfiguration configuration) : IValidateOptions<FanoutOptions>
{
    public ValidateOptionsResult Validate(string? name, FanoutOptions options)
    {
        if (!Enum.IsDefined(options.Provider))
        {
            return ValidateOptionsResult.Fail("Fanout:Provider must be InProcess or Redis.");
        }

        // DataAnnotations do not descend into Fanout:Redis by themselves.
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        if (!System.ComponentModel.DataAnnotations.Validator.TryValidateObject(
                options.Redis, new System.ComponentModel.DataAnnotations.ValidationContext(options.Redis), results, validateAllProperties: true))
        {
            return ValidateOptionsResult.Fail(results.Select(r => $"Fanout:Redis:{string.Join(", ", r.MemberNames)}: {r.ErrorMessage}"));
        }

        if (options.Provider != FanoutProvider.Redis)
        {
            return ValidateOptionsResult.Success;
        }

        var connectionString = configuration.GetConnectionString("Redis");
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            return ValidateOptionsResult.Fail(
                "Fanout:Provider is Redis but ConnectionStrings:Redis is not set (e.g. ConnectionStrings__Redis=\"redis:6379,password=...\").");
        }

        StackExchange.Redis.ConfigurationOptions parsed;
        try
        {
            parsed = StackExchange.Redis.ConfigurationOptions.Parse(connectionString);
        }
        catch (ArgumentException ex)
        {
            return ValidateOptionsResult.Fail($"ConnectionStrings:Redis is not a valid Redis configuration: {ex.Message}");
        }

        if (parsed.EndPoints.Count == 0)
        {
            // Parsed options without a server: the client would refuse them only when the instance starts.
            return ValidateOptionsResult.Fail(
                "ConnectionStrings:Redis names no Redis server: it needs host:port first (e.g. ConnectionStrings__Redis=\"redis:6379,password=...\").");
        }

        if (parsed.ChannelPrefix is { IsNullOrEmpty: false })
        {
            // The client would prefix this instance's SUBSCRIBE, but the publish script names channels itself, without
            // it: nothing would cross instances. Fanout:Redis:Prefix already separates deployments.
            return ValidateOptionsResult.Fail(
                "ConnectionStrings:Redis sets channelPrefix, which the Redis fan-out cannot use (its channels would not match); remove it and set Fanout:Redis:Prefix instead.");
        }

        return ValidateOptionsResult.Success;
    }
}

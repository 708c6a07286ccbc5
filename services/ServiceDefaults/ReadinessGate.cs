using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Graft.ServiceDefaults;

/// <summary>A health check a service flips to healthy once it can really serve
/// (for the backbone: model loaded and warm-up run passed).</summary>
public sealed class ReadinessGate : IHealthCheck
{
    private volatile string? _notReadyReason = "starting";

    public void MarkReady() => _notReadyReason = null;

    public void MarkNotReady(string reason) => _notReadyReason = reason;

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        => Task.FromResult(_notReadyReason is null ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy(_notReadyReason));
}

public static class ReadinessGateExtensions
{
    /// <summary>Registers a <see cref="ReadinessGate"/> singleton as the "ready" health check.</summary>
    public static IHealthChecksBuilder AddReadinessGate(this IServiceCollection services, string name)
    {
        services.AddSingleton<ReadinessGate>();
        return services.AddHealthChecks().AddCheck<ReadinessGate>(name, tags: [GraftDefaults.ReadyTag]);
    }
}

using Microsoft.Extensions.DependencyInjection;
using Polly.Telemetry;

namespace Graft.Gateway;

/// <summary>How loud Polly's own log is. Every attempt, retry and attempt timeout is already one line of
/// <see cref="DownstreamInvoker"/> (event ids 2001/2002) and the failed call one line of the server interceptor, so
/// Polly's per-attempt events (each with a full stack trace) drop to Debug; circuit-breaker transitions, rare and
/// worth knowing, stay visible.</summary>
public static class ResilienceLogging
{
    public static IServiceCollection AddQuietResilienceLogging(this IServiceCollection services)
        => services.Configure<TelemetryOptions>(o => o.SeverityProvider = args => args.Event.EventName switch
        {
            "OnCircuitOpened" => ResilienceEventSeverity.Warning,
            "OnCircuitClosed" or "OnCircuitHalfOpened" => ResilienceEventSeverity.Information,
            _ => ResilienceEventSeverity.Debug,
        });
}

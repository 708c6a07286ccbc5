using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace Graft.Gateway.Downstream;

/// <summary>Polly pipelines per downstream, composed as breaker( retry( attempt-timeout( call ) ) ) for idempotent
/// calls and breaker( attempt-timeout( call ) ) for the rest. The breaker sits outside the retries: it counts what a
/// client would see, so one dead replica among several (whose failed attempts a retry absorbs on another replica)
/// never opens it, and an open breaker refuses at once, without retrying.</summary>
public static class ResilienceSetup
{
    public static string BreakerKey(string downstream) => $"{downstream}:breaker";

    public static string RetryKey(string downstream) => $"{downstream}:retry";

    public static string OnceKey(string downstream) => $"{downstream}:once";

    /// <summary>Failures that say the downstream, not the request, is at fault.</summary>
    public static bool IsTransient(Exception e) =>
        e is TimeoutRejectedException || e is RpcException { StatusCode: StatusCode.Unavailable } || (e is RpcException r && IsTransportFailure(r));

    /// <summary>A status the gRPC client made up itself (it carries the client's exception) for a broken connection,
    /// which it reports as INTERNAL or UNKNOWN; a status sent by the downstream never carries one.</summary>
    public static bool IsTransportFailure(RpcException e) =>
        e.StatusCode is StatusCode.Internal or StatusCode.Unknown
        && e.Status.DebugException is HttpRequestException or IOException; // HttpProtocolException is an IOException

    public static IServiceCollection AddDownstreamResilience(this IServiceCollection services, string downstream)
    {
        services.AddResiliencePipeline(BreakerKey(downstream), (builder, context) =>
        {
            var o = context.ServiceProvider.GetRequiredService<IOptions<GatewayOptions>>().Value;
            builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                Name = $"{downstream}-breaker",
                FailureRatio = o.BreakerFailureRatio,
                MinimumThroughput = o.BreakerMinimumThroughput,
                SamplingDuration = o.BreakerSamplingDuration,
                BreakDuration = o.BreakerBreakDuration,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && IsTransient(e)),
            });
        });
        services.AddResiliencePipeline(RetryKey(downstream), (builder, context) =>
        {
            var o = context.ServiceProvider.GetRequiredService<IOptions<GatewayOptions>>().Value;
            if (o.MaxRetries > 0)
            {
                builder.AddRetry(new RetryStrategyOptions
                {
                    Name = $"{downstream}-retry",
                    MaxRetryAttempts = o.MaxRetries,
                    Delay = o.RetryBaseDelay,
                    BackoffType = DelayBackoffType.Exponential,
                    UseJitter = true,
                    ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && IsTransient(e)),
                });
            }
            builder.AddTimeout(new TimeoutStrategyOptions { Name = $"{downstream}-attempt-timeout", Timeout = o.AttemptTimeout });
        });
        services.AddResiliencePipeline(OnceKey(downstream), (builder, context) =>
        {
            var o = context.ServiceProvider.GetRequiredService<IOptions<GatewayOptions>>().Value;
            builder.AddTimeout(new TimeoutStrategyOptions { Name = $"{downstream}-attempt-timeout", Timeout = o.AttemptTimeout });
        });
        return services;
    }
}

using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace Graft.Gateway;

/// <summary>Polly pipelines per downstream. The guard (circuit breaker around a per-attempt timeout) wraps every
/// unary call; the retry pipeline wraps the guard for idempotent calls only, so an open breaker is never retried.</summary>
public static class ResilienceSetup
{
    public static string GuardKey(string downstream) => $"{downstream}:guard";

    public static string RetryKey(string downstream) => $"{downstream}:retry";

    /// <summary>Failures that say the downstream, not the request, is at fault.</summary>
    public static bool IsTransient(Exception e) =>
        e is TimeoutRejectedException || e is RpcException { StatusCode: StatusCode.Unavailable };

    public static IServiceCollection AddDownstreamResilience(this IServiceCollection services, string downstream)
    {
        services.AddResiliencePipeline(GuardKey(downstream), (builder, context) =>
        {
            var o = context.ServiceProvider.GetRequiredService<IOptions<GatewayOptions>>().Value;
            builder
                .AddCircuitBreaker(new CircuitBreakerStrategyOptions
                {
                    Name = $"{downstream}-breaker",
                    FailureRatio = o.BreakerFailureRatio,
                    MinimumThroughput = o.BreakerMinimumThroughput,
                    SamplingDuration = o.BreakerSamplingDuration,
                    BreakDuration = o.BreakerBreakDuration,
                    ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && IsTransient(e)),
                })
                .AddTimeout(new TimeoutStrategyOptions { Name = $"{downstream}-attempt-timeout", Timeout = o.AttemptTimeout });
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
        });
        return services;
    }
}

using System.Diagnostics;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Polly.Registry;
using Polly.Timeout;

namespace Graft.Gateway.Downstream;

/// <summary>Runs unary calls to one downstream through its resilience pipelines, records each attempt, and turns
/// failures into statuses a gateway client can act on (the downstream's own status and message are kept).</summary>
public sealed partial class DownstreamInvoker
{
    private readonly string _downstream;
    private readonly ResiliencePipeline _breaker;
    private readonly ResiliencePipeline _retrying;
    private readonly ResiliencePipeline _once;
    private readonly DownstreamMetrics _metrics;
    private readonly ILogger _logger;

    public DownstreamInvoker(string downstream, ResiliencePipelineProvider<string> pipelines, DownstreamMetrics metrics, ILogger logger)
    {
        _downstream = downstream;
        _breaker = pipelines.GetPipeline(ResilienceSetup.BreakerKey(downstream));
        _retrying = pipelines.GetPipeline(ResilienceSetup.RetryKey(downstream));
        _once = pipelines.GetPipeline(ResilienceSetup.OnceKey(downstream));
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>A call that is safe to repeat: retried on UNAVAILABLE and attempt timeouts, with backoff and jitter.</summary>
    public Task<TReply> IdempotentAsync<TReply>(string method, Func<CallOptions, AsyncUnaryCall<TReply>> call, CancellationToken cancellationToken)
        => RunAsync(method, call, retry: true, cancellationToken);

    /// <summary>A call with side effects: one attempt only, still behind the breaker and the attempt timeout.</summary>
    public Task<TReply> OnceAsync<TReply>(string method, Func<CallOptions, AsyncUnaryCall<TReply>> call, CancellationToken cancellationToken)
        => RunAsync(method, call, retry: false, cancellationToken);

    /// <summary>Records one attempt of a call made outside the pipelines (streaming calls).</summary>
    public void Record(string method, StatusCode status, TimeSpan elapsed) => _metrics.Record(_downstream, method, status.ToString(), elapsed.TotalSeconds);

    /// <summary>The client-facing form of a downstream failure. A status the gRPC client made up itself (it carries a
    /// DebugException: connection refused, reset...) names exception types and internal addresses, so only its gist is
    /// passed on; the full text is logged.</summary>
    public RpcException Translate(RpcException e) => e.StatusCode switch
    {
        // A transport failure the client reported as INTERNAL (e.g. the connection broke off mid-call with an HTTP/2
        // protocol error) means the downstream could not be used, not that it failed the request.
        _ when ResilienceSetup.IsTransportFailure(e) => new RpcException(new Status(StatusCode.Unavailable,
            $"The {_downstream} service is unavailable (the connection broke off); retry shortly.")),
        StatusCode.Unavailable => new RpcException(new Status(StatusCode.Unavailable,
            $"The {_downstream} service is unavailable ({(e.Status.DebugException is null ? e.Status.Detail : "it could not be reached")}); retry shortly.")),
        StatusCode.DeadlineExceeded => new RpcException(new Status(StatusCode.DeadlineExceeded,
            $"The deadline expired while waiting for the {_downstream} service.")),
        StatusCode.Internal or StatusCode.Unknown => new RpcException(new Status(e.StatusCode,
            $"The {_downstream} service failed: {(e.Status.DebugException is null ? e.Status.Detail : "the call broke off")}")),
        // INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED...: the downstream's words are the answer.
        _ => new RpcException(new Status(e.StatusCode, e.Status.Detail)),
    };

    private async Task<TReply> RunAsync<TReply>(string method, Func<CallOptions, AsyncUnaryCall<TReply>> call, bool retry, CancellationToken cancellationToken)
    {
        var attempts = 0;
        try
        {
            var pipeline = retry ? _retrying : _once;
            return await _breaker.ExecuteAsync(
                token => pipeline.ExecuteAsync(t => Attempt(method, call, t), token), cancellationToken);
        }
        catch (BrokenCircuitException e)
        {
            _metrics.Record(_downstream, method, DownstreamMetrics.CircuitOpen, 0);
            var after = e.RetryAfter is { } ra ? $" for about {Math.Max(0.1, ra.TotalSeconds):0.#} s" : "";
            throw new RpcException(new Status(StatusCode.Unavailable,
                $"The {_downstream} service is unavailable: recent calls failed, so the gateway is not calling it{after}; retry shortly."));
        }
        catch (TimeoutRejectedException e)
        {
            LogAttemptTimeout(_logger, _downstream, method, e.Timeout.TotalSeconds);
            throw new RpcException(new Status(StatusCode.Unavailable,
                $"The {_downstream} service did not answer within {e.Timeout.TotalSeconds:0.###} s ({attempts} attempt(s)); retry shortly."));
        }
        catch (RpcException e)
        {
            if (e.StatusCode == StatusCode.Unavailable || ResilienceSetup.IsTransportFailure(e))
            {
                LogUnavailable(_logger, _downstream, method, e.Status.Detail);
            }
            throw Translate(e);
        }

        async ValueTask<TReply> Attempt(string m, Func<CallOptions, AsyncUnaryCall<TReply>> c, CancellationToken token)
        {
            attempts++;
            var started = Stopwatch.GetTimestamp();
            try
            {
                using var pending = c(new CallOptions(cancellationToken: token));
                var reply = await pending.ResponseAsync.ConfigureAwait(false);
                _metrics.Record(_downstream, m, nameof(StatusCode.OK), Stopwatch.GetElapsedTime(started).TotalSeconds);
                return reply;
            }
            catch (RpcException e)
            {
                _metrics.Record(_downstream, m, e.StatusCode.ToString(), Stopwatch.GetElapsedTime(started).TotalSeconds);
                if (e.StatusCode == StatusCode.Cancelled && token.IsCancellationRequested)
                {
                    // Our own cancellation (attempt timeout or the caller going away): let Polly see it as such.
                    throw new OperationCanceledException("Downstream call cancelled.", e, token);
                }
                throw;
            }
        }
    }

    [LoggerMessage(EventId = 4010, Level = LogLevel.Warning, Message = "Downstream {Downstream} unavailable on {Method}: {Detail}")]
    private static partial void LogUnavailable(ILogger logger, string downstream, string method, string detail);

    [LoggerMessage(EventId = 4011, Level = LogLevel.Warning, Message = "Downstream {Downstream} did not answer {Method} within the attempt timeout of {Seconds} s")]
    private static partial void LogAttemptTimeout(ILogger logger, string downstream, string method, double seconds);
}

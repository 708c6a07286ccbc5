using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace Graft.ServiceDefaults;

/// <summary>Records every call's status and latency, and turns unexpected exceptions into
/// <see cref="StatusCode.Internal"/> without leaking their text or stack to the client.</summary>
public sealed partial class ServerErrorInterceptor(RpcMetrics metrics, ILogger<ServerErrorInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
        => await Observe(context, () => continuation(request, context));

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
        => await Observe(context, () => continuation(requestStream, context));

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
        => await Observe(context, async () => { await continuation(request, responseStream, context); return true; });

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
        => await Observe(context, async () => { await continuation(requestStream, responseStream, context); return true; });

    private async Task<T> Observe<T>(ServerCallContext context, Func<Task<T>> call)
    {
        var started = Stopwatch.GetTimestamp();
        var code = StatusCode.OK;
        string? detail = null;
        try
        {
            return await call();
        }
        catch (RpcException e)
        {
            code = e.StatusCode;
            detail = e.Status.Detail;
            throw;
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            code = context.Deadline <= DateTime.UtcNow ? StatusCode.DeadlineExceeded : StatusCode.Cancelled;
            throw new RpcException(new Status(code, code == StatusCode.DeadlineExceeded ? "Deadline exceeded." : "Call cancelled by the client."));
        }
        catch (Exception e)
        {
            code = StatusCode.Internal;
            var traceId = Activity.Current?.TraceId.ToString() ?? context.GetHttpContext().TraceIdentifier;
            LogUnhandled(logger, e, context.Method, traceId);
            throw new RpcException(new Status(StatusCode.Internal, $"Internal error while handling {context.Method}; the server log has the details under trace id {traceId}."));
        }
        finally
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            metrics.Record(context.Method, code, elapsed.TotalSeconds);
            LogOutcome(context.Method, code, elapsed, detail);
        }
    }

    /// <summary>One line per failed call (an unhandled exception was logged above with its stack); successful calls
    /// only at Debug (<c>Logging__LogLevel__Graft.ServiceDefaults=Debug</c>), so a busy service's log stays small.</summary>
    private void LogOutcome(string method, StatusCode code, TimeSpan elapsed, string? detail)
    {
        var ms = Math.Round(elapsed.TotalMilliseconds, 1);
        switch (code)
        {
            case StatusCode.OK:
                LogSucceeded(logger, method, ms);
                break;
            case StatusCode.Internal:
                break;
            // Caused by the caller, and answered with a precise status: worth a line, not an alarm.
            case StatusCode.InvalidArgument or StatusCode.NotFound or StatusCode.AlreadyExists or StatusCode.FailedPrecondition
                or StatusCode.OutOfRange or StatusCode.Unauthenticated or StatusCode.PermissionDenied or StatusCode.Cancelled
                or StatusCode.ResourceExhausted:
                LogRefused(logger, method, code, ms, detail ?? "");
                break;
            default:
                LogFailed(logger, method, code, ms, detail ?? "");
                break;
        }
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Error, Message = "Unhandled exception in {Method} (trace id {TraceId})")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string traceId);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Warning, Message = "{Method} failed with {StatusCode} after {ElapsedMs} ms: {Detail}")]
    private static partial void LogFailed(ILogger logger, string method, StatusCode statusCode, double elapsedMs, string detail);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Information, Message = "{Method} refused with {StatusCode} after {ElapsedMs} ms: {Detail}")]
    private static partial void LogRefused(ILogger logger, string method, StatusCode statusCode, double elapsedMs, string detail);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Debug, Message = "{Method} OK after {ElapsedMs} ms")]
    private static partial void LogSucceeded(ILogger logger, string method, double elapsedMs);
}

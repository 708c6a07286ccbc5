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
        try
        {
            return await call();
        }
        catch (RpcException e)
        {
            code = e.StatusCode;
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
            metrics.Record(context.Method, code, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Error, Message = "Unhandled exception in {Method} (trace id {TraceId})")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string traceId);
}

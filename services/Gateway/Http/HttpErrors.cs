using System.Diagnostics;
using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;

namespace Graft.Gateway.Http;

/// <summary>How the gateway's plain HTTP endpoints answer a failure: the same gRPC status and message the gRPC API
/// gives, as the usual HTTP code (the table JSON transcoding uses), in the body shape transcoding writes
/// (<c>{"code": 3, "message": "...", "details": []}</c>) so a client parses one error format.</summary>
public static partial class HttpErrors
{
    /// <summary>The HTTP status for a gRPC status code (google.rpc.Code's documented mapping).</summary>
    public static int HttpStatus(StatusCode code) => code switch
    {
        StatusCode.OK => StatusCodes.Status200OK,
        StatusCode.Cancelled => 499,
        StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.OutOfRange => StatusCodes.Status400BadRequest,
        StatusCode.DeadlineExceeded => StatusCodes.Status504GatewayTimeout,
        StatusCode.NotFound => StatusCodes.Status404NotFound,
        StatusCode.AlreadyExists or StatusCode.Aborted => StatusCodes.Status409Conflict,
        StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
        StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        StatusCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
        StatusCode.Unimplemented => StatusCodes.Status501NotImplemented,
        StatusCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>An upload over a size or count limit: 413 with a message naming the limit and its configuration key.</summary>
    public static RpcException TooLarge(string message) => new(new Status(StatusCode.ResourceExhausted, message), [new("x-graft-http-status", "413")]);

    /// <summary>Writes <paramref name="error"/> as the transcoding-shaped JSON error (nothing when the response already started).</summary>
    public static async Task WriteAsync(HttpContext http, RpcException error)
    {
        if (http.Response.HasStarted)
        {
            return;
        }
        var status = error.Trailers.GetValue("x-graft-http-status") is { } forced ? int.Parse(forced, System.Globalization.CultureInfo.InvariantCulture) : HttpStatus(error.StatusCode);
        http.Response.StatusCode = status;
        if (error.StatusCode == StatusCode.Unauthenticated)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
        }
        http.Response.ContentType = "application/json; charset=utf-8";
        await JsonSerializer.SerializeAsync(http.Response.Body,
            new ErrorBody((int)error.StatusCode, error.Status.Detail, []), HttpJsonContext.Default.ErrorBody, http.RequestAborted);
    }

    /// <summary>Runs an HTTP endpoint: a <see cref="RpcException"/> becomes its HTTP answer; an over-limit or malformed
    /// body becomes 413/400 with a message a person can act on; anything unexpected is a 500 with a trace id (the log
    /// has the details), as gRPC calls get.</summary>
    public static async Task GuardAsync(HttpContext http, ILogger logger, Func<Task> endpoint, Func<HttpContext, RpcException, Task>? write = null)
    {
        write ??= WriteAsync;
        try
        {
            await endpoint();
        }
        catch (RpcException e)
        {
            await write(http, e);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            var limit = http.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            await write(http, TooLarge($"the request body is larger than the gateway accepts here ({limit} bytes); send fewer or smaller images."));
        }
        catch (BadHttpRequestException e)
        {
            await write(http, new RpcException(new Status(StatusCode.InvalidArgument, $"the request could not be read: {e.Message}")));
        }
        catch (InvalidDataException e)
        {
            // Malformed multipart, or one of FormOptions' limits (count, section length).
            await write(http, new RpcException(new Status(StatusCode.InvalidArgument, $"the upload could not be read as multipart/form-data: {e.Message}")));
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nobody is left to answer.
        }
        catch (Exception e)
        {
            var traceId = Activity.Current?.TraceId.ToString() ?? http.TraceIdentifier;
            LogUnhandled(logger, e, http.Request.Path.Value ?? "", traceId);
            await write(http, new RpcException(new Status(StatusCode.Internal,
                $"Internal error while handling {http.Request.Path}; the server log has the details under trace id {traceId}.")));
        }
    }

    [LoggerMessage(EventId = 4300, Level = LogLevel.Error, Message = "Unhandled exception in HTTP endpoint {Path} (trace id {TraceId})")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string path, string traceId);
}

/// <summary>The JSON error body, as JSON transcoding writes it.</summary>
public sealed record ErrorBody(int Code, string Message, string[] Details);

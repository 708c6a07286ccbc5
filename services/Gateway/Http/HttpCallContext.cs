using Grpc.Core;

namespace Graft.Gateway.Http;

/// <summary>Lets an HTTP endpoint call a <see cref="Services.GatewayService"/> method directly (GetHead, Describe), so
/// the HTTP surfaces reuse its logic rather than copy it: the request's cancellation, no deadline, the caller's address.</summary>
internal sealed class HttpCallContext(HttpContext http, string method) : ServerCallContext
{
    private readonly Metadata _trailers = [];
    private readonly Metadata _headers = [];

    protected override string MethodCore => method;
    protected override string HostCore => http.Request.Host.Value ?? "";
    protected override string PeerCore => http.Connection.RemoteIpAddress?.ToString() ?? "";
    protected override DateTime DeadlineCore => DateTime.MaxValue;
    protected override Metadata RequestHeadersCore => _headers;
    protected override CancellationToken CancellationTokenCore => http.RequestAborted;
    protected override Metadata ResponseTrailersCore => _trailers;
    protected override Status StatusCore { get; set; }
    protected override WriteOptions? WriteOptionsCore { get; set; }
    protected override AuthContext AuthContextCore => new(null, []);

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("HTTP endpoints do not propagate gRPC calls.");

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;

    protected override IDictionary<object, object> UserStateCore { get; } = new Dictionary<object, object>();
}

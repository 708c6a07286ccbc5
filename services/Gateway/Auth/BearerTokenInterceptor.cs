using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Auth;

/// <summary>Checks the bearer token of every Gateway call. Admin calls need the admin token; the other calls need the
/// predict token when one is configured (the admin token also works). Tokens are compared in constant time, on their
/// SHA-256 digests so their lengths do not leak either, and never logged.</summary>
public sealed partial class BearerTokenInterceptor : Interceptor
{
    private static readonly HashSet<string> AdminMethods = new(StringComparer.Ordinal)
    {
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.TrainHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.RetrainHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.DeleteHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.ActivateHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.ExportHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.SetHeadSplit)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.PromoteHead)}",
        $"/{V1.Gateway.Descriptor.FullName}/{nameof(V1.Gateway.GatewayBase.AbortHeadSplit)}",
    };

    private readonly byte[]? _adminDigest;
    private readonly byte[]? _predictDigest;
    private readonly bool _allowUnauthenticatedAdmin;
    private readonly ILogger<BearerTokenInterceptor> _logger;

    public BearerTokenInterceptor(IOptions<GatewayOptions> options, ILogger<BearerTokenInterceptor> logger)
    {
        var o = options.Value;
        _adminDigest = Digest(o.AdminToken);
        _predictDigest = Digest(o.PredictToken);
        _allowUnauthenticatedAdmin = o.AllowUnauthenticatedAdmin;
        _logger = logger;
    }

    /// <summary>True when <paramref name="method"/> (e.g. <c>/graft.v1.Gateway/TrainHead</c>) is an admin call.</summary>
    public static bool IsAdmin(string method) => AdminMethods.Contains(method);

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        var admin = IsAdmin(context.Method);
        Authorize(context.Method, admin, context.RequestHeaders.GetValue("authorization"), context.Peer);
    }

    /// <summary>The same check for the gateway's plain HTTP endpoints (uploads, training, Open Inference Protocol):
    /// <paramref name="operation"/> names the call in the message (e.g. <c>POST /v1/heads/{name}/train</c>) and
    /// <paramref name="authorization"/> is the request's Authorization header. Throws the same
    /// UNAUTHENTICATED / PERMISSION_DENIED <see cref="RpcException"/> as a gRPC call gets.</summary>
    public void Authorize(string operation, bool admin, string? authorization, string peer)
    {
        if (admin && _adminDigest is null)
        {
            if (_allowUnauthenticatedAdmin)
            {
                return;
            }
            LogAdminDisabled(_logger, operation);
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                "Admin calls are disabled: the gateway has no admin token. Set Graft__Gateway__AdminToken, " +
                "or Graft__Gateway__AllowUnauthenticatedAdmin=true for open local development."));
        }
        if (!admin && _predictDigest is null)
        {
            return; // Predict and reads are open unless a predict token is configured.
        }

        var presented = ReadBearer(authorization);
        if (presented is null)
        {
            LogRejected(_logger, operation, peer, "no bearer token");
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"{operation} needs the header 'authorization: Bearer <{(admin ? "admin" : "predict")} token>'."));
        }

        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        var accepted = Matches(digest, _adminDigest) | (!admin && Matches(digest, _predictDigest));
        if (!accepted)
        {
            LogRejected(_logger, operation, peer, "wrong token");
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"The bearer token is not valid for {operation}{(admin ? " (it needs the admin token)" : "")}."));
        }
    }

    private static bool Matches(byte[] digest, byte[]? expected) =>
        expected is not null && CryptographicOperations.FixedTimeEquals(digest, expected);

    private static string? ReadBearer(string? value)
    {
        const string scheme = "Bearer ";
        if (value is null || !value.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var token = value[scheme.Length..].Trim();
        return token.Length == 0 ? null : token;
    }

    private static byte[]? Digest(string? token) =>
        string.IsNullOrWhiteSpace(token) ? null : SHA256.HashData(Encoding.UTF8.GetBytes(token.Trim()));

    [LoggerMessage(EventId = 4020, Level = LogLevel.Warning, Message = "Rejected {Method} from {Peer}: {Reason}")]
    private static partial void LogRejected(ILogger logger, string method, string peer, string reason);

    [LoggerMessage(EventId = 4021, Level = LogLevel.Warning, Message = "Refused admin call {Method}: no admin token is configured and open admin access was not enabled")]
    private static partial void LogAdminDisabled(ILogger logger, string method);
}

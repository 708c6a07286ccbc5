using System.Net.Http;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Graft.V1;

namespace Graft.Cli.Client;

/// <summary>One connection to the Gateway: the channel, the typed client, the bearer token, and the
/// translation of gRPC failures into messages that say what to do.</summary>
public sealed class GatewaySession : IDisposable
{
    private readonly GrpcChannel _channel;
    private readonly string? _token;

    public GatewaySession(Uri address, string? token, int maxMessageBytes = 64 * 1024 * 1024)
    {
        Address = address;
        Display = address.GetLeftPart(UriPartial.Authority);
        _token = string.IsNullOrWhiteSpace(token) ? null : token.Trim();
        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            // Fail fast when nothing listens, instead of waiting for a call deadline.
            HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5), EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = maxMessageBytes,
            MaxSendMessageSize = maxMessageBytes,
        });
        Client = new Gateway.GatewayClient(_channel);
    }

    public Uri Address { get; }

    /// <summary>The address as people write it: scheme, host and port.</summary>
    public string Display { get; }

    public Gateway.GatewayClient Client { get; }

    /// <summary>True when a token will be sent.</summary>
    public bool HasToken => _token is not null;

    /// <summary>Call metadata with the bearer token, when there is one.</summary>
    public Metadata Headers()
    {
        var headers = new Metadata();
        if (_token is not null) headers.Add("authorization", $"Bearer {_token}");
        return headers;
    }

    /// <summary>A deadline for a unary call: generous, because a cold backbone or a busy 2-core host is slow.</summary>
    public static DateTime UnaryDeadline => DateTime.UtcNow.AddSeconds(120);

    /// <summary>Runs a call and turns an <see cref="RpcException"/> into a <see cref="CliException"/> with advice.</summary>
    public async Task<T> Call<T>(string what, Func<Gateway.GatewayClient, Task<T>> call)
    {
        try
        {
            return await call(Client);
        }
        catch (RpcException e)
        {
            throw Translate(e, what);
        }
    }

    /// <summary>A user-facing explanation of a failed call, with the exit code that matches it.</summary>
    public CliException Translate(RpcException e, string what)
    {
        if (IsConnectionFailure(e))
            return new CliException(
                $"Gateway not reachable at {Display}: run `graft up` (or point --gateway / GRAFT_GATEWAY at a running Gateway).",
                ExitCodes.Unreachable);
        return e.StatusCode switch
        {
            StatusCode.Unauthenticated or StatusCode.PermissionDenied => new CliException(
                $"The Gateway refused to {what}: {e.Status.Detail} " +
                (HasToken ? "The token sent was not accepted; check --token / GRAFT_ADMIN_TOKEN." :
                    "Pass --token, set GRAFT_ADMIN_TOKEN, or run from the folder where `graft up` wrote data/admin-token."),
                ExitCodes.Unauthorized),
            StatusCode.Unavailable => new CliException(
                $"The Gateway at {Display} could not {what}: {e.Status.Detail} (a service behind it is down or still starting; try again, or restart with `graft up`).",
                ExitCodes.Unreachable),
            StatusCode.DeadlineExceeded => new CliException(
                $"The Gateway at {Display} did not finish \"{what}\" in time: {e.Status.Detail}", ExitCodes.Unreachable),
            StatusCode.Cancelled => new CliException("Cancelled.", ExitCodes.Interrupted),
            _ => new CliException($"Could not {what}: {e.Status.Detail} ({e.StatusCode}).", ExitCodes.Failed),
        };
    }

    /// <summary>A refused or timed-out connection, as opposed to an answer from a Gateway.</summary>
    public static bool IsConnectionFailure(RpcException e)
        => e.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.DeadlineExceeded
           && e.Status.DebugException is HttpRequestException or SocketException or IOException or TaskCanceledException;

    public void Dispose() => _channel.Dispose();
}

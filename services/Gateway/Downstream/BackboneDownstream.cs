using Google.Protobuf;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly.Registry;

namespace Graft.Gateway.Downstream;

/// <summary>The backbone as the gateway uses it: resilient Extract and Describe.</summary>
public sealed class BackboneDownstream(
    Backbone.BackboneClient client, ResiliencePipelineProvider<string> pipelines, DownstreamMetrics metrics,
    BackboneIdentity identity, ILogger<BackboneDownstream> logger)
{
    private readonly DownstreamInvoker _invoker = new(DownstreamClients.Backbone, pipelines, metrics, logger);

    public async Task<ExtractReply> ExtractAsync(ByteString image, CancellationToken cancellationToken)
    {
        var reply = await _invoker.IdempotentAsync("Extract", o => client.ExtractAsync(new ExtractRequest { Image = image }, o), cancellationToken);
        identity.Observe(reply.Fingerprint);
        return reply;
    }

    public async Task<BackboneInfo> DescribeAsync(CancellationToken cancellationToken)
    {
        var reply = await _invoker.IdempotentAsync("Describe", o => client.DescribeAsync(new DescribeBackboneRequest(), o), cancellationToken);
        identity.Observe(reply.Fingerprint);
        return reply;
    }

    /// <summary>The current backbone fingerprint: the one last seen, else asked for; null when the backbone cannot say.</summary>
    public async Task<string?> CurrentFingerprintAsync(CancellationToken cancellationToken)
    {
        if (identity.Fingerprint is { } known)
        {
            return known;
        }
        try
        {
            return (await DescribeAsync(cancellationToken)).Fingerprint;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable)
        {
            return null;
        }
    }
}

using Graft.Gateway.Downstream;
using Graft.ServiceDefaults.Streaming;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Flows;

/// <summary>Predict: one backbone pass per image, returning the final features and the activations at every cut point a
/// requested fine-tuned head takes, then one HeadService call for every requested head.</summary>
public sealed class PredictionFlow(
    BackboneDownstream backbone, HeadsDownstream heads, HeadCatalog catalog, Microsoft.Extensions.Options.IOptions<GatewayOptions> options)
{
    private const int DefaultTopK = 3;
    private const int MaxTopK = 1000;

    public async Task<PredictReply> PredictAsync(PredictRequest request, CancellationToken cancellationToken)
    {
        if (request.Image.IsEmpty)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "image is empty: send the encoded bytes of a JPEG, PNG, WebP, GIF or BMP image."));
        }
        if (request.TopK is < 0 or > MaxTopK)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"top_k must be between 0 and {MaxTopK} (0 means {DefaultTopK}); got {request.TopK}."));
        }
        var blank = request.Heads.FirstOrDefault(string.IsNullOrWhiteSpace);
        if (blank is not null)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "heads must not contain an empty name."));
        }

        var fingerprint = await backbone.CurrentFingerprintAsync(cancellationToken);
        var cutPoints = await catalog.CutPointsAsync(request.Heads, fingerprint, cancellationToken);
        var features = await backbone.ExtractAsync(request.Image, cutPoints, null, cancellationToken);
        HeadPredictReply outputs;
        try
        {
            outputs = await heads.PredictAsync(HeadRequest(request, features), cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            // Perhaps a head changed depth through another gateway replica: refresh the catalog once. Only when it now
            // names other cut points is there anything to retry (with one more backbone run, in this rare case).
            catalog.Invalidate();
            var refreshed = await catalog.CutPointsAsync(request.Heads, features.Fingerprint, cancellationToken);
            if (refreshed.SequenceEqual(cutPoints))
            {
                throw;
            }
            features = await backbone.ExtractAsync(request.Image, refreshed, null, cancellationToken);
            outputs = await heads.PredictAsync(HeadRequest(request, features), cancellationToken);
        }

        var results = request.Heads.Count == 0
            ? outputs.Outputs.OrderBy(o => o.Head, StringComparer.Ordinal)
            : outputs.Outputs.AsEnumerable();
        return new PredictReply { BackboneFingerprint = features.Fingerprint, CacheHit = features.CacheHit, Results = { results } };
    }

    private static HeadPredictRequest HeadRequest(PredictRequest request, ExtractReply features) => new()
    {
        Features = { features.Features },
        BackboneFingerprint = features.Fingerprint,
        Heads = { request.Heads },
        TopK = request.TopK == 0 ? DefaultTopK : request.TopK,
        CutFeatures = { features.CutFeatures },
    };

    /// <summary>Runs a few items at once but writes the replies in request order; a failed item becomes an item-level error.</summary>
    public Task PredictStreamAsync(IAsyncStreamReader<PredictStreamRequest> requests, IServerStreamWriter<PredictStreamReply> replies, CancellationToken cancellationToken)
        => OrderedStreamPipeline.RunAsync(requests, replies, options.Value.PredictStreamConcurrency,
            async (item, token) => new PredictStreamReply { Id = item.Id, Reply = await PredictAsync(item.Request ?? new PredictRequest(), token) },
            (item, e) => e is RpcException { StatusCode: not (StatusCode.Cancelled or StatusCode.DeadlineExceeded) } failed
                ? new PredictStreamReply { Id = item.Id, ErrorCode = (int)failed.StatusCode, ErrorMessage = failed.Status.Detail }
                : null,
            cancellationToken);
}

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
        // Cut points are those of the backbone last seen: behind replicas of two backbones, ask one of that backbone.
        var features = cutPoints.Count > 0 && fingerprint is not null
            ? await backbone.ExtractFromAsync(request.Image, cutPoints, null, fingerprint, options.Value.FingerprintAttempts, cancellationToken)
            : await backbone.ExtractAsync(request.Image, cutPoints, null, cancellationToken);
        var reportUnready = request.Heads.Count > 0;
        HeadPredictReply outputs;
        try
        {
            outputs = await heads.PredictAsync(HeadRequest(request, features, reportUnready), cancellationToken);
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
            features = await backbone.ExtractFromAsync(request.Image, refreshed, null, features.Fingerprint, options.Value.FingerprintAttempts, cancellationToken);
            outputs = await heads.PredictAsync(HeadRequest(request, features, reportUnready), cancellationToken);
        }
        if (outputs.Unready.Count > 0)
        {
            // A rolling upgrade: these features come from a backbone a requested head has no version for yet. Fetch them
            // from a replica of a backbone every requested head is ready for, and answer with the matching versions.
            var target = CommonFingerprint(outputs.Unready, features.Fingerprint);
            var targetCuts = await catalog.CutPointsAsync(request.Heads, target, cancellationToken);
            features = await backbone.ExtractFromAsync(request.Image, targetCuts, null, target, options.Value.FingerprintAttempts, cancellationToken);
            outputs = await heads.PredictAsync(HeadRequest(request, features, reportUnready: false), cancellationToken);
        }

        var results = request.Heads.Count == 0
            ? outputs.Outputs.OrderBy(o => o.Head, StringComparer.Ordinal)
            : outputs.Outputs.AsEnumerable();
        return new PredictReply { BackboneFingerprint = features.Fingerprint, CacheHit = features.CacheHit, Results = { results } };
    }

    private static HeadPredictRequest HeadRequest(PredictRequest request, ExtractReply features, bool reportUnready) => new()
    {
        Features = { features.Features },
        BackboneFingerprint = features.Fingerprint,
        Heads = { request.Heads },
        TopK = request.TopK == 0 ? DefaultTopK : request.TopK,
        CutFeatures = { features.CutFeatures },
        RequestId = request.RequestId,
        ReportUnready = reportUnready,
    };

    /// <summary>A fingerprint every unready head is ready for (the heads that were ready are ready for the one the
    /// features came from, and HeadService says so again on the second call). FAILED_PRECONDITION when there is none.</summary>
    private static string CommonFingerprint(IReadOnlyList<HeadUnready> unready, string served)
    {
        var common = unready.Select(u => (IEnumerable<string>)u.ReadyFingerprints).Aggregate((a, b) => a.Intersect(b, StringComparer.Ordinal)).Order(StringComparer.Ordinal).ToList();
        return common.FirstOrDefault() ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, unready.Count == 1
            ? $"Head '{unready[0].Head}' has no version for the backbone in use ('{served}'); it is ready for {Ready(unready[0])}. Retrain it on the current backbone."
            : $"The requested heads have no backbone in common: {string.Join("; ", unready.Select(u => $"'{u.Head}' is ready for {Ready(u)}"))}, and the backbone in use is '{served}'. Retrain them on the current backbone."));

        static string Ready(HeadUnready u) => u.ReadyFingerprints.Count == 0 ? "no backbone" : string.Join(", ", u.ReadyFingerprints.Select(f => $"'{f}'"));
    }

    /// <summary>Runs a few items at once but writes the replies in request order; a failed item becomes an item-level error.</summary>
    public Task PredictStreamAsync(IAsyncStreamReader<PredictStreamRequest> requests, IServerStreamWriter<PredictStreamReply> replies, CancellationToken cancellationToken)
        => OrderedStreamPipeline.RunAsync(requests, replies, options.Value.PredictStreamConcurrency,
            async (item, token) => new PredictStreamReply { Id = item.Id, Reply = await PredictAsync(WithRequestId(item), token) },
            (item, e) => e is RpcException { StatusCode: not (StatusCode.Cancelled or StatusCode.DeadlineExceeded) } failed
                ? new PredictStreamReply { Id = item.Id, ErrorCode = (int)failed.StatusCode, ErrorMessage = failed.Status.Detail }
                : null,
            cancellationToken);

    /// <summary>The stream item's id is its request id unless the request names one, so a canary split is stable per item.</summary>
    private static PredictRequest WithRequestId(PredictStreamRequest item)
    {
        var request = item.Request ?? new PredictRequest();
        return request.RequestId.Length > 0 || item.Id.Length == 0 ? request : new PredictRequest(request) { RequestId = item.Id };
    }
}

using Graft.Gateway.Datasets;
using Graft.Gateway.Downstream;
using Graft.Gateway.Flows;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Services;

/// <summary>The public API. Thin: checks the request, routes it to the backbone and the heads, shapes the reply.
/// HeadService's NOT_FOUND already names the heads that exist, so it passes through as it is.</summary>
public sealed class GatewayService(
    PredictionFlow prediction, TrainingFlow training, ExportFlow export, BackboneDownstream backbone, HeadsDownstream heads,
    DatasetStore datasets, DatasetReferences datasetReferences, HeadCatalog catalog) : V1.Gateway.GatewayBase
{
    public override Task<PredictReply> Predict(PredictRequest request, ServerCallContext context)
        => prediction.PredictAsync(request, context.CancellationToken);

    public override Task PredictStream(IAsyncStreamReader<PredictStreamRequest> requestStream, IServerStreamWriter<PredictStreamReply> responseStream, ServerCallContext context)
        => prediction.PredictStreamAsync(requestStream, responseStream, context.CancellationToken);

    public override Task TrainHead(IAsyncStreamReader<TrainHeadRequest> requestStream, IServerStreamWriter<TrainProgress> responseStream, ServerCallContext context)
        => training.TrainAsync(requestStream, responseStream, context.CancellationToken);

    public override async Task<ListHeadsReply> ListHeads(ListHeadsRequest request, ServerCallContext context)
    {
        var fingerprint = string.IsNullOrEmpty(request.BackboneFingerprint)
            ? await backbone.CurrentFingerprintAsync(context.CancellationToken) ?? ""
            : request.BackboneFingerprint;
        return Annotate(await heads.ListAsync(new ListHeadsRequest { BackboneFingerprint = fingerprint }, context.CancellationToken));
    }

    public override async Task<HeadInfo> GetHead(GetHeadRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        var fingerprint = string.IsNullOrEmpty(request.BackboneFingerprint)
            ? await backbone.CurrentFingerprintAsync(context.CancellationToken) ?? ""
            : request.BackboneFingerprint;
        return Annotate(await heads.GetAsync(new GetHeadRequest { Name = request.Name, BackboneFingerprint = fingerprint }, context.CancellationToken));
    }

    public override async Task<DeleteHeadReply> DeleteHead(DeleteHeadRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        try
        {
            // The training sets of the versions about to go: released once the delete succeeded (if no other version names them).
            var before = datasets.Enabled ? await heads.GetAsync(new GetHeadRequest { Name = request.Name }, context.CancellationToken) : null;
            var reply = await heads.DeleteAsync(request, context.CancellationToken);
            if (before is not null)
            {
                var deleted = reply.DeletedVersions.ToHashSet();
                await datasetReferences.ReleaseAsync(
                    before.Versions.Where(v => deleted.Contains(v.Version)).Select(v => v.Spec?.Dataset ?? ""), CancellationToken.None);
            }
            return reply;
        }
        finally
        {
            catalog.Invalidate();
        }
    }

    public override Task RetrainHead(RetrainHeadRequest request, IServerStreamWriter<TrainProgress> responseStream, ServerCallContext context)
        => training.RetrainAsync(request, responseStream, context.CancellationToken);

    public override async Task<HeadInfo> ActivateHead(ActivateVersionRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        if (request.Version <= 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"version must be a positive version number of head '{request.Name}' (got {request.Version})."));
        }
        try
        {
            return await heads.ActivateAsync(request, context.CancellationToken);
        }
        finally
        {
            catalog.Invalidate();
        }
    }

    public override async Task<DescribeReply> Describe(DescribeRequest request, ServerCallContext context)
    {
        var info = await backbone.DescribeAsync(context.CancellationToken);
        var list = await heads.ListAsync(new ListHeadsRequest { BackboneFingerprint = info.Fingerprint }, context.CancellationToken);
        return new DescribeReply { Backbone = info, Heads = { Annotate(list).Heads } };
    }

    public override async Task<HeadInfo> SetHeadSplit(HeadSplitRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        return await heads.SetSplitAsync(request, context.CancellationToken);
    }

    public override async Task<HeadInfo> PromoteHead(HeadSplitActionRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        return await heads.PromoteAsync(request, context.CancellationToken);
    }

    public override async Task<HeadInfo> AbortHeadSplit(HeadSplitActionRequest request, ServerCallContext context)
    {
        RequireName(request.Name);
        return await heads.AbortSplitAsync(request, context.CancellationToken);
    }

    public override Task ExportHead(ExportHeadRequest request, IServerStreamWriter<ExportHeadChunk> responseStream, ServerCallContext context)
        => export.ExportAsync(request, responseStream, context.CancellationToken);

    private ListHeadsReply Annotate(ListHeadsReply reply)
    {
        foreach (var head in reply.Heads)
        {
            Annotate(head);
        }
        return reply;
    }

    private HeadInfo Annotate(HeadInfo head)
    {
        foreach (var version in head.Versions)
        {
            datasets.Annotate(version);
        }
        return head;
    }

    private static void RequireName(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "name is required: the name of a head (see ListHeads)."));
        }
    }
}

using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly.Registry;

namespace Graft.Gateway;

/// <summary>HeadService as the gateway uses it. Reads are retried; Delete, Activate and Train never are.</summary>
public sealed class HeadsDownstream(
    Heads.HeadsClient client, ResiliencePipelineProvider<string> pipelines, DownstreamMetrics metrics, ILogger<HeadsDownstream> logger)
{
    private readonly DownstreamInvoker _invoker = new(DownstreamClients.Heads, pipelines, metrics, logger);

    public DownstreamInvoker Invoker => _invoker;

    public Task<HeadPredictReply> PredictAsync(HeadPredictRequest request, CancellationToken cancellationToken)
        => _invoker.IdempotentAsync("Predict", o => client.PredictAsync(request, o), cancellationToken);

    public Task<ListHeadsReply> ListAsync(ListHeadsRequest request, CancellationToken cancellationToken)
        => _invoker.IdempotentAsync("ListHeads", o => client.ListHeadsAsync(request, o), cancellationToken);

    public Task<HeadInfo> GetAsync(GetHeadRequest request, CancellationToken cancellationToken)
        => _invoker.IdempotentAsync("GetHead", o => client.GetHeadAsync(request, o), cancellationToken);

    public Task<DeleteHeadReply> DeleteAsync(DeleteHeadRequest request, CancellationToken cancellationToken)
        => _invoker.OnceAsync("DeleteHead", o => client.DeleteHeadAsync(request, o), cancellationToken);

    public Task<HeadInfo> ActivateAsync(ActivateVersionRequest request, CancellationToken cancellationToken)
        => _invoker.OnceAsync("ActivateVersion", o => client.ActivateVersionAsync(request, o), cancellationToken);

    /// <summary>Downloads one head version for export (ExportVersion): its description, then its weight tensors
    /// reassembled by name. One attempt.</summary>
    public async Task<Export.HeadParameters> ExportVersionAsync(ExportVersionRequest request, CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            using var call = client.ExportVersion(request, cancellationToken: cancellationToken);
            HeadExport? head = null;
            var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                if (chunk.Head is { } first)
                {
                    head = first;
                    continue;
                }
                var piece = chunk.Weights;
                if (!tensors.TryGetValue(piece.Name, out var values))
                {
                    tensors[piece.Name] = values = new float[piece.Shape.Aggregate(1L, (a, d) => a * d)];
                }
                if (piece.Offset < 0 || piece.Offset + piece.Data.Count > values.Length)
                {
                    throw new RpcException(new Status(StatusCode.Internal, $"HeadService sent a piece of tensor '{piece.Name}' outside its shape."));
                }
                piece.Data.CopyTo(values, (int)piece.Offset);
            }
            _invoker.Record("ExportVersion", StatusCode.OK, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            return new Export.HeadParameters(head ?? throw new RpcException(new Status(StatusCode.Unavailable, "HeadService ended the export before describing the head; retry.")), tensors);
        }
        catch (RpcException e)
        {
            _invoker.Record("ExportVersion", e.StatusCode, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            throw _invoker.Translate(e);
        }
    }

    /// <summary>Opens a training call; the caller drives both streams (no retry: training is not idempotent).</summary>
    public AsyncDuplexStreamingCall<TrainHeadRowsRequest, TrainProgress> StartTrain(CancellationToken cancellationToken)
        => client.Train(cancellationToken: cancellationToken);

    /// <summary>Appends the names of the existing heads to a NOT_FOUND from HeadService, so the caller sees what exists.</summary>
    public async Task<RpcException> WithKnownHeadsAsync(RpcException notFound, CancellationToken cancellationToken)
    {
        if (notFound.StatusCode != StatusCode.NotFound)
        {
            return notFound;
        }
        try
        {
            var names = (await ListAsync(new ListHeadsRequest(), cancellationToken)).Heads.Select(h => h.Name).Order(StringComparer.Ordinal).ToList();
            if (names.Count > 0 && names.All(n => notFound.Status.Detail.Contains(n, StringComparison.Ordinal)))
            {
                return notFound; // HeadService already listed them.
            }
            var known = names.Count == 0 ? "No heads exist yet." : $"Existing heads: {string.Join(", ", names)}.";
            return new RpcException(new Status(StatusCode.NotFound, $"{notFound.Status.Detail.TrimEnd()} {known}"));
        }
        catch (RpcException)
        {
            return notFound;
        }
    }
}

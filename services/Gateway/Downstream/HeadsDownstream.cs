using System.Diagnostics;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly.Registry;

namespace Graft.Gateway.Downstream;

/// <summary>HeadService as the gateway uses it. Reads are retried; Delete, Activate and Train never are.</summary>
public sealed class HeadsDownstream(
    Heads.HeadsClient client, ResiliencePipelineProvider<string> pipelines, DownstreamMetrics metrics, ILogger<HeadsDownstream> logger)
{
    private readonly DownstreamInvoker _invoker = new(DownstreamClients.Heads, pipelines, metrics, logger);

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

    public Task<HeadInfo> SetSplitAsync(HeadSplitRequest request, CancellationToken cancellationToken)
        => _invoker.OnceAsync("SetTrafficSplit", o => client.SetTrafficSplitAsync(request, o), cancellationToken);

    public Task<HeadInfo> PromoteAsync(HeadSplitActionRequest request, CancellationToken cancellationToken)
        => _invoker.OnceAsync("PromoteCandidate", o => client.PromoteCandidateAsync(request, o), cancellationToken);

    public Task<HeadInfo> AbortSplitAsync(HeadSplitActionRequest request, CancellationToken cancellationToken)
        => _invoker.OnceAsync("AbortSplit", o => client.AbortSplitAsync(request, o), cancellationToken);

    /// <summary>Downloads one head version for export (ExportVersion): its description, then its weight tensors
    /// reassembled by name. One attempt.</summary>
    public async Task<Export.HeadParameters> ExportVersionAsync(ExportVersionRequest request, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
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
            _invoker.Record("ExportVersion", StatusCode.OK, Stopwatch.GetElapsedTime(started));
            return new Export.HeadParameters(head ?? throw new RpcException(new Status(StatusCode.Unavailable, "HeadService ended the export before describing the head; retry.")), tensors);
        }
        catch (RpcException e)
        {
            _invoker.Record("ExportVersion", e.StatusCode, Stopwatch.GetElapsedTime(started));
            throw _invoker.Translate(e);
        }
    }

    /// <summary>Trains a head: sends the spec, then lets <paramref name="sendBody"/> stream the rest (tail pieces, row
    /// batches) as it produces them, and hands every progress message to <paramref name="onProgress"/>. No retry
    /// (training is not idempotent); the call is recorded in the downstream metrics like every other, and a failure
    /// reaches the caller as a client-facing status. When HeadService ends the call early (a bad spec, say) the body's
    /// next write stops it and HeadService's status, read afterwards, says why; any other failure of the body (a bad
    /// image, the backbone unavailable) cancels the call and is rethrown as it is.</summary>
    /// <returns>The published version.</returns>
    public async Task<HeadVersionInfo> TrainAsync(
        HeadSpec spec, Func<Func<TrainHeadRowsRequest, Task>, Task> sendBody, Func<TrainProgress, Task> onProgress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        using var call = client.Train(cancellationToken: cancellationToken);
        Exception? writeFailure = null;
        try
        {
            await Write(new TrainHeadRowsRequest { Spec = spec });
            await sendBody(Write);
            await call.RequestStream.CompleteAsync();
        }
        catch (HeadServiceEndedEarly e)
        {
            // HeadService ended the call early (a bad spec, say); its status, read below, says why.
            writeFailure = e.InnerException;
        }

        HeadVersionInfo? published = null;
        try
        {
            await foreach (var step in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                if (step.Phase == TrainPhase.Published)
                {
                    published = step.Published;
                }
                await onProgress(step);
            }
        }
        catch (RpcException e)
        {
            _invoker.Record("Train", e.StatusCode, Stopwatch.GetElapsedTime(started));
            throw _invoker.Translate(e);
        }
        _invoker.Record("Train", StatusCode.OK, Stopwatch.GetElapsedTime(started));

        return published ?? throw (writeFailure is null
            ? new RpcException(new Status(StatusCode.Aborted, "HeadService ended the training stream without publishing a version; try again."))
            : new RpcException(new Status(StatusCode.Unavailable, $"the training rows could not be sent to HeadService ({writeFailure.Message}); try again.")));

        async Task Write(TrainHeadRowsRequest message)
        {
            try
            {
                await call.RequestStream.WriteAsync(message, cancellationToken);
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException)
            {
                throw new HeadServiceEndedEarly(e);
            }
        }
    }

    /// <summary>Marks a failed write to the Train stream, as opposed to a failure of whatever produced the message.</summary>
    private sealed class HeadServiceEndedEarly(Exception inner) : Exception(inner.Message, inner);
}

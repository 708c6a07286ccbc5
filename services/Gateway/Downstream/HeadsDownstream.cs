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

    /// <summary>Trains a head: sends the spec, then the rows in messages of <paramref name="rowsPerMessage"/>, and hands
    /// every progress message to <paramref name="onProgress"/>. No retry (training is not idempotent); the call is
    /// recorded in the downstream metrics like every other, and a failure reaches the caller as a client-facing status.</summary>
    /// <returns>The published version.</returns>
    public async Task<HeadVersionInfo> TrainAsync(
        HeadSpec spec, IReadOnlyList<FeatureRow> rows, int rowsPerMessage, Func<TrainProgress, Task> onProgress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        using var call = client.Train(cancellationToken: cancellationToken);
        Exception? writeFailure = null;
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = spec }, cancellationToken);
            foreach (var chunk in rows.Chunk(rowsPerMessage))
            {
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = new FeatureRows { Rows = { chunk } } }, cancellationToken);
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // HeadService ended the call early (a bad spec, say); its status, read below, says why.
            writeFailure = e;
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
    }
}

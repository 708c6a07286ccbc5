using System.Threading.Channels;
using Graft.Gateway.Downstream;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Flows;

/// <summary>Predict: one backbone pass per image, then one HeadService call for every requested head.</summary>
public sealed class PredictionFlow(BackboneDownstream backbone, HeadsDownstream heads, Microsoft.Extensions.Options.IOptions<GatewayOptions> options)
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

        var features = await backbone.ExtractAsync(request.Image, cancellationToken);
        HeadPredictReply outputs;
        try
        {
            outputs = await heads.PredictAsync(new HeadPredictRequest
            {
                Features = { features.Features },
                BackboneFingerprint = features.Fingerprint,
                Heads = { request.Heads },
                TopK = request.TopK == 0 ? DefaultTopK : request.TopK,
            }, cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw await heads.WithKnownHeadsAsync(e, cancellationToken);
        }

        var results = request.Heads.Count == 0
            ? outputs.Outputs.OrderBy(o => o.Head, StringComparer.Ordinal)
            : outputs.Outputs.AsEnumerable();
        return new PredictReply { BackboneFingerprint = features.Fingerprint, CacheHit = features.CacheHit, Results = { results } };
    }

    /// <summary>Runs a few items at once but writes the replies in request order; a failed item becomes an item-level error.</summary>
    public async Task PredictStreamAsync(IAsyncStreamReader<PredictStreamRequest> requests, IServerStreamWriter<PredictStreamReply> replies, CancellationToken cancellationToken)
    {
        var pending = Channel.CreateBounded<Task<PredictStreamReply>>(options.Value.PredictStreamConcurrency);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var writer = Task.Run(async () =>
        {
            try
            {
                await foreach (var item in pending.Reader.ReadAllAsync(stop.Token))
                {
                    await replies.WriteAsync(await item, stop.Token);
                }
            }
            catch
            {
                await stop.CancelAsync(); // Unblock the reader below; the writer's exception is the call's outcome.
                throw;
            }
        }, CancellationToken.None);

        try
        {
            await foreach (var item in requests.ReadAllAsync(stop.Token))
            {
                await pending.Writer.WriteAsync(RunItemAsync(item, stop.Token), stop.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The writer failed; awaiting it below rethrows its exception.
        }
        finally
        {
            pending.Writer.TryComplete();
        }
        await writer;
    }

    private async Task<PredictStreamReply> RunItemAsync(PredictStreamRequest item, CancellationToken cancellationToken)
    {
        try
        {
            var reply = await PredictAsync(item.Request ?? new PredictRequest(), cancellationToken);
            return new PredictStreamReply { Id = item.Id, Reply = reply };
        }
        catch (RpcException e) when (e.StatusCode is not (StatusCode.Cancelled or StatusCode.DeadlineExceeded))
        {
            return new PredictStreamReply { Id = item.Id, ErrorCode = (int)e.StatusCode, ErrorMessage = e.Status.Detail };
        }
    }
}

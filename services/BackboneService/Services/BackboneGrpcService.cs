using System.Threading.Channels;
using Google.Protobuf.Collections;
using Graft.V1;
using Grpc.Core;

namespace Graft.Backbone.Services;

/// <summary>The wire side of the backbone: translates <c>graft.v1.Backbone</c> calls to <see cref="FeatureExtractor"/>
/// and refusals to precise gRPC statuses. Public so tests can host the service with <c>WebApplicationFactory</c>.</summary>
public sealed class BackboneGrpcService(FeatureExtractor extractor) : V1.Backbone.BackboneBase
{
    public override async Task<ExtractReply> Extract(ExtractRequest request, ServerCallContext context)
    {
        try
        {
            return await ExtractOneAsync(request, context.CancellationToken);
        }
        catch (InputRejectedException e)
        {
            throw new RpcException(new Status(e.IsSizeLimit ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument, e.Message));
        }
    }

    /// <summary>Items are extracted concurrently (so they batch) and answered in request order; a bad item gets an
    /// item-level error and the stream goes on.</summary>
    public override async Task ExtractStream(IAsyncStreamReader<ExtractStreamRequest> requestStream, IServerStreamWriter<ExtractStreamReply> responseStream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        // Bounded so a fast sender cannot queue unbounded work; twice a batch keeps the batcher fed.
        var inFlight = Channel.CreateBounded<Task<ExtractStreamReply>>(Math.Max(2, extractor.Batcher.MaxBatchSize * 2));
        var reading = Task.Run(async () =>
        {
            try
            {
                await foreach (var item in requestStream.ReadAllAsync(token))
                {
                    await inFlight.Writer.WriteAsync(ExtractItemAsync(item, token), token);
                }
                inFlight.Writer.TryComplete();
            }
            catch (Exception e)
            {
                inFlight.Writer.TryComplete(e);
            }
        }, token);

        await foreach (var reply in inFlight.Reader.ReadAllAsync(token))
        {
            await responseStream.WriteAsync(await reply, token);
        }
        await reading;
    }

    public override Task<BackboneInfo> Describe(DescribeBackboneRequest request, ServerCallContext context)
    {
        var model = extractor.Model;
        var info = new BackboneInfo
        {
            Name = model.Profile.Name,
            Fingerprint = model.Fingerprint,
            FeatureDimension = model.FeatureDimension,
            ExecutionProvider = model.ExecutionProvider,
            MaxBatchSize = extractor.Batcher.MaxBatchSize,
            MaxQueueDelayMs = extractor.Batcher.MaxQueueDelay.TotalMilliseconds,
            CutTensor = model.Cut.CutTensor,
            Preprocessing = model.Profile.DescribePreprocessing(),
            CacheCapacityBytes = extractor.Cache.CapacityBytes,
            CacheUsedBytes = extractor.Cache.UsedBytes,
            Sessions = model.Layout.Sessions,
            IntraOpThreads = model.Layout.IntraOpThreads,
            Spinning = model.Layout.AllowSpinning,
            Cores = model.Layout.Cores,
            Precision = model.Precision,
        };
        info.InputShape.AddRange(model.InputShape);
        return Task.FromResult(info);
    }

    private async Task<ExtractStreamReply> ExtractItemAsync(ExtractStreamRequest item, CancellationToken token)
    {
        try
        {
            return new ExtractStreamReply { Id = item.Id, Reply = await ExtractOneAsync(item.Request ?? new ExtractRequest(), token) };
        }
        catch (InputRejectedException e)
        {
            return new ExtractStreamReply
            {
                Id = item.Id,
                ErrorCode = (int)(e.IsSizeLimit ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument),
                ErrorMessage = e.Message,
            };
        }
    }

    private async Task<ExtractReply> ExtractOneAsync(ExtractRequest request, CancellationToken token)
    {
        var features = request.InputCase switch
        {
            ExtractRequest.InputOneofCase.Image => await extractor.ExtractImageAsync(request.Image.Memory, token),
            ExtractRequest.InputOneofCase.Tensor => await extractor.ExtractTensorAsync(request.Tensor.Shape, ToMemory(request.Tensor.Data), token),
            _ => throw new InputRejectedException(
                "The request has no input; set 'image' to encoded image bytes (JPEG, PNG, WebP, GIF or BMP) or 'tensor' to a float32 tensor."),
        };
        var reply = new ExtractReply { Dimension = features.Values.Length, Fingerprint = extractor.Model.Fingerprint, CacheHit = features.CacheHit };
        reply.Features.AddRange(features.Values);
        return reply;
    }

    private static ReadOnlyMemory<float> ToMemory(RepeatedField<float> values)
    {
        var array = new float[values.Count];
        values.CopyTo(array, 0);
        return array;
    }
}

using Google.Protobuf.Collections;
using Graft.ServiceDefaults.Streaming;
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
            throw new RpcException(new Status(StatusOf(e), e.Message));
        }
    }

    /// <summary>Items are extracted concurrently (so they batch) and answered in request order; a bad item gets an
    /// item-level error and the stream goes on.</summary>
    public override Task ExtractStream(IAsyncStreamReader<ExtractStreamRequest> requestStream, IServerStreamWriter<ExtractStreamReply> responseStream, ServerCallContext context)
        => OrderedStreamPipeline.RunAsync(requestStream, responseStream, extractor.StreamConcurrency,
            async (item, token) => new ExtractStreamReply { Id = item.Id, Reply = await ExtractOneAsync(item.Request ?? new ExtractRequest(), token) },
            (item, e) => e is InputRejectedException rejected
                ? new ExtractStreamReply { Id = item.Id, ErrorCode = (int)StatusOf(rejected), ErrorMessage = rejected.Message }
                : null,
            context.CancellationToken);

    public override Task<BackboneInfo> Describe(DescribeBackboneRequest request, ServerCallContext context)
    {
        var d = extractor.Describe();
        var info = new BackboneInfo
        {
            Name = d.Name,
            Fingerprint = d.Fingerprint,
            FeatureDimension = d.FeatureDimension,
            ExecutionProvider = d.ExecutionProvider,
            MaxBatchSize = d.MaxBatchSize,
            MaxQueueDelayMs = d.MaxQueueDelay.TotalMilliseconds,
            CutTensor = d.CutTensor,
            Preprocessing = d.Preprocessing,
            CacheCapacityBytes = d.CacheCapacityBytes,
            CacheUsedBytes = d.CacheUsedBytes,
            Sessions = d.Layout.Sessions,
            IntraOpThreads = d.Layout.IntraOpThreads,
            Spinning = d.Layout.AllowSpinning,
            Cores = d.Layout.Cores,
            Precision = d.Precision,
        };
        info.InputShape.AddRange(d.InputShape);
        return Task.FromResult(info);
    }

    private static StatusCode StatusOf(InputRejectedException e) => e.IsSizeLimit ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument;

    private async Task<ExtractReply> ExtractOneAsync(ExtractRequest request, CancellationToken token)
    {
        var features = request.InputCase switch
        {
            ExtractRequest.InputOneofCase.Image => await extractor.ExtractImageAsync(request.Image.Memory, token),
            ExtractRequest.InputOneofCase.Tensor => await extractor.ExtractTensorAsync(request.Tensor.Shape, ToMemory(request.Tensor.Data), token),
            _ => throw new InputRejectedException(
                "The request has no input; set 'image' to encoded image bytes (JPEG, PNG, WebP, GIF or BMP) or 'tensor' to a float32 tensor."),
        };
        var reply = new ExtractReply { Dimension = features.Values.Length, Fingerprint = extractor.Fingerprint, CacheHit = features.CacheHit };
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

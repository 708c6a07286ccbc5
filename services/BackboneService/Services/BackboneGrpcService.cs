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
        };
        info.InputShape.AddRange(model.InputShape);
        return Task.FromResult(info);
    }

    /// <summary>Streams the served graph for export: a <see cref="ServedGraph"/> (identity, input, cut, preprocessing as
    /// data), then the ONNX bytes in pieces of at most <see cref="ExportChunkBytes"/>.</summary>
    public override async Task ExportGraph(ExportGraphRequest request, IServerStreamWriter<ExportGraphChunk> responseStream, ServerCallContext context)
    {
        var model = extractor.Model;
        Graft.Backbone.Model.ServedModel served;
        try
        {
            served = await Task.Run(model.ExportServedGraph, context.CancellationToken);
        }
        catch (InvalidOperationException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message));
        }
        var profile = model.Profile;
        var preprocessing = new Preprocessing
        {
            Description = profile.DescribePreprocessing(),
            Bgr = profile.ColorOrder == Graft.Backbone.Model.ColorOrder.Bgr,
            Scale = profile.Scale,
            Mean = { profile.Mean },
            Std = { profile.Std },
            MeanImage = { extractor.Preprocessor.MeanImage.ToArray() },
        };
        var graph = new ServedGraph
        {
            Fingerprint = served.Fingerprint,
            Name = profile.Name,
            InputName = served.InputName,
            OutputName = served.Cut.CutTensor,
            InputShape = { model.InputShape },
            FeatureDimension = model.FeatureDimension,
            Preprocessing = preprocessing,
            ModelBytes = served.ModelBytes.Length,
            ModelSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(served.ModelBytes)),
        };
        await responseStream.WriteAsync(new ExportGraphChunk { Graph = graph }, context.CancellationToken);
        for (var offset = 0; offset < served.ModelBytes.Length; offset += ExportChunkBytes)
        {
            var length = Math.Min(ExportChunkBytes, served.ModelBytes.Length - offset);
            await responseStream.WriteAsync(
                new ExportGraphChunk { Data = Google.Protobuf.ByteString.CopyFrom(served.ModelBytes, offset, length) }, context.CancellationToken);
        }
    }

    /// <summary>Largest piece of a streamed model, well under the 16 MiB message limit.</summary>
    public const int ExportChunkBytes = 1 << 20;

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

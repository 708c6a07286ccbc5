using Google.Protobuf;
using Google.Protobuf.Collections;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
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
        if (request.RequiredFingerprint.Length > 0 && request.RequiredFingerprint != extractor.Fingerprint)
        {
            // Checked before any work: during a rolling upgrade the caller asks again and the balancer picks another replica.
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"This backbone replica serves fingerprint '{extractor.Fingerprint}', not the required '{request.RequiredFingerprint}'; ask another replica."));
        }
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
        foreach (var cut in d.CutPoints)
        {
            var cutInfo = new CutPointInfo { Name = cut.Name, Tensor = cut.Tensor, Dimension = cut.Dimension, TailParameters = cut.TailParameters };
            cutInfo.Shape.AddRange(cut.Shape);
            info.CutPoints.Add(cutInfo);
        }
        return Task.FromResult(info);
    }

    /// <summary>Streams the served graph for export: a <see cref="ServedGraph"/> (identity, input, cut, preprocessing as
    /// data), then the ONNX bytes in pieces of at most <see cref="ExportChunkBytes"/>.</summary>
    public override async Task ExportGraph(ExportGraphRequest request, IServerStreamWriter<ExportGraphChunk> responseStream, ServerCallContext context)
    {
        GraphExport export;
        try
        {
            export = await Task.Run(extractor.ExportGraph, context.CancellationToken);
        }
        catch (InvalidOperationException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message));
        }
        var (served, profile) = (export.Served, export.Profile);
        var preprocessing = new Preprocessing
        {
            Description = profile.DescribePreprocessing(),
            Bgr = profile.ColorOrder == Graft.Backbone.Model.ColorOrder.Bgr,
            Scale = profile.Scale,
            Mean = { profile.Mean },
            Std = { profile.Std },
            MeanImage = { export.MeanImage.ToArray() },
        };
        var graph = new ServedGraph
        {
            Fingerprint = served.Fingerprint,
            Name = profile.Name,
            InputName = served.InputName,
            OutputName = served.Cut.CutTensor,
            InputShape = { export.InputShape },
            FeatureDimension = export.FeatureDimension,
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

    /// <summary>Bytes per <see cref="TailGraphChunk"/>: well under the default 4 MB message limit.</summary>
    public const int TailChunkBytes = 1 << 20;

    public override async Task GetTail(GetTailRequest request, IServerStreamWriter<TailGraphChunk> responseStream, ServerCallContext context)
    {
        CutPointOutput cut;
        try
        {
            cut = extractor.CutPoint(request.CutPoint);
        }
        catch (InputRejectedException e)
        {
            throw new RpcException(new Status(StatusOf(e), e.Message));
        }
        for (var offset = 0; offset < cut.TailOnnx.Length; offset += TailChunkBytes)
        {
            var chunk = new TailGraphChunk
            {
                CutPoint = cut.Name,
                Fingerprint = extractor.Fingerprint,
                OnnxChunk = ByteString.CopyFrom(cut.TailOnnx, offset, Math.Min(TailChunkBytes, cut.TailOnnx.Length - offset)),
                TotalBytes = cut.TailOnnx.Length,
            };
            chunk.InputShape.AddRange(cut.Shape);
            await responseStream.WriteAsync(chunk, context.CancellationToken);
        }
    }

    private static StatusCode StatusOf(InputRejectedException e) => e.IsSizeLimit ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument;

    private async Task<ExtractReply> ExtractOneAsync(ExtractRequest request, CancellationToken token)
    {
        var cutPoints = request.CutPoints;
        var view = request.Augmentation is { } augmentation ? new AugmentationView(augmentation.View, augmentation.Seed) : AugmentationView.None;
        FeatureExtractor.CheckView(view);
        var features = request.InputCase switch
        {
            ExtractRequest.InputOneofCase.Image => await extractor.ExtractImageAsync(request.Image.Memory, cutPoints, view, token),
            ExtractRequest.InputOneofCase.Tensor when !view.IsIdentity => throw new InputRejectedException(
                $"augmentation.view is {view.View} but the input is a tensor; augmentation transforms images, so send the image bytes in 'image', or leave augmentation unset (view 0) for a tensor."),
            ExtractRequest.InputOneofCase.Tensor => await extractor.ExtractTensorAsync(request.Tensor.Shape, ToMemory(request.Tensor.Data), cutPoints, token),
            _ => throw new InputRejectedException(
                "The request has no input; set 'image' to encoded image bytes (JPEG, PNG, WebP, GIF or BMP) or 'tensor' to a float32 tensor."),
        };
        var reply = new ExtractReply { Dimension = features.Values.Length, Fingerprint = extractor.Fingerprint, CacheHit = features.CacheHit };
        reply.Features.AddRange(features.Values);
        for (var k = 0; k < cutPoints.Count; k++)
        {
            var cut = new CutFeatures { CutPoint = cutPoints[k] };
            cut.Shape.AddRange(extractor.CutPoint(cutPoints[k]).Shape);
            cut.Values.AddRange(features.CutValues[k]);
            reply.CutFeatures.Add(cut);
        }
        return reply;
    }

    private static ReadOnlyMemory<float> ToMemory(RepeatedField<float> values)
    {
        var array = new float[values.Count];
        values.CopyTo(array, 0);
        return array;
    }
}

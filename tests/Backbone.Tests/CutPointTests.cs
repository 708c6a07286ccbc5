using Google.Protobuf;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace Graft.Backbone.Tests;

[Collection(BackboneCollection.Name)]
public sealed class CutPointTests(DefaultBackbone cached, UncachedBackbone uncached)
{
    [Fact]
    public async Task Describe_lists_resnet18s_last_block_and_last_stage_found_by_the_graph_structure()
    {
        var info = await cached.Client.DescribeAsync(new DescribeBackboneRequest());

        var block = Assert.Single(info.CutPoints, c => c.Name == CutPointFinder.LastBlock);
        var stage = Assert.Single(info.CutPoints, c => c.Name == CutPointFinder.LastStage);
        Assert.Equal([512L, 7, 7], block.Shape);
        Assert.Equal(512 * 7 * 7, block.Dimension);
        Assert.Equal([256L, 14, 14], stage.Shape);
        // The last block holds two 3x3 512->512 convolutions with their batch norms; the stage four, plus the 3x3
        // 256->512 and 1x1 projection of its first block.
        Assert.Equal(2 * ((512L * 512 * 9) + (4 * 512)), block.TailParameters);
        Assert.True(stage.TailParameters > 4 * block.TailParameters / 2 + (256L * 512 * 9), $"stage tail has {stage.TailParameters} weights");
        // The CNTK export's names, to show the structure search landed on the block input (after the ReLU of block 3).
        Assert.Equal("ReLU379_Output_0", block.Tensor);
        Assert.Equal("ReLU347_Output_0", stage.Tensor);
    }

    [Fact]
    public async Task One_extraction_returns_the_final_features_and_both_cut_points_from_a_single_model_run()
    {
        var image = File.ReadAllBytes(SampleImages.Load("test")[3].Path);
        var plain = await uncached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });
        var inferencesBefore = await uncached.Factory.ReadMetricAsync("graft_backbone_inferences_total");
        var batchesBefore = await uncached.Factory.ReadMetricAsync("graft_backbone_batches_total");

        var reply = await uncached.Client.ExtractAsync(new ExtractRequest
        {
            Image = ByteString.CopyFrom(image),
            CutPoints = { CutPointFinder.LastStage, CutPointFinder.LastBlock },
        });

        Assert.Equal(1, await uncached.Factory.ReadMetricAsync("graft_backbone_inferences_total") - inferencesBefore);
        Assert.Equal(1, await uncached.Factory.ReadMetricAsync("graft_backbone_batches_total") - batchesBefore);
        Assert.Equal(plain.Features, reply.Features);
        Assert.Equal([CutPointFinder.LastStage, CutPointFinder.LastBlock], reply.CutFeatures.Select(c => c.CutPoint));
        Assert.Equal([256L, 14, 14], reply.CutFeatures[0].Shape);
        Assert.Equal(256 * 14 * 14, reply.CutFeatures[0].Values.Count);
        Assert.Equal(512 * 7 * 7, reply.CutFeatures[1].Values.Count);
        // After a ReLU: non-negative, and not all zero.
        Assert.All(reply.CutFeatures, c => Assert.True(c.Values.Min() >= 0 && c.Values.Max() > 0));
    }

    [Fact]
    public async Task The_cache_keys_by_cut_point_so_a_cut_not_yet_cached_runs_the_model()
    {
        var image = File.ReadAllBytes(SampleImages.Load("test")[11].Path);
        var finalOnly = await cached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });
        var withBlock = new ExtractRequest { Image = ByteString.CopyFrom(image), CutPoints = { CutPointFinder.LastBlock } };

        var first = await cached.Client.ExtractAsync(withBlock);
        var second = await cached.Client.ExtractAsync(withBlock);
        var finalAgain = await cached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });

        Assert.False(first.CacheHit);
        Assert.True(second.CacheHit);
        Assert.True(finalAgain.CacheHit);
        Assert.Equal(first.CutFeatures[0].Values, second.CutFeatures[0].Values);
        Assert.Equal(finalOnly.Features, second.Features);
    }

    [Fact]
    public async Task An_unknown_cut_point_is_refused_naming_the_ones_offered()
    {
        var image = File.ReadAllBytes(SampleImages.Load("test")[0].Path);

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await cached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image), CutPoints = { "layer9" } }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("'layer9'", e.Status.Detail);
        Assert.Contains(CutPointFinder.LastBlock, e.Status.Detail);
    }

    [Fact]
    public async Task GetTail_returns_an_onnx_graph_from_the_cut_to_the_final_features()
    {
        using var call = cached.Client.GetTail(new GetTailRequest { CutPoint = CutPointFinder.LastBlock });
        var chunks = await call.ResponseStream.ReadAllAsync().ToListAsync();

        Assert.True(chunks.Count > 1, "a 19 MB tail should come in several chunks");
        var bytes = chunks.SelectMany(c => c.OnnxChunk.ToByteArray()).ToArray();
        Assert.Equal(chunks[0].TotalBytes, bytes.Length);
        var model = ModelProto.Parser.ParseFrom(bytes);
        Assert.Equal("ReLU379_Output_0", Assert.Single(model.Graph.Input).Name);
        Assert.Equal("Pooling395_Output_0", Assert.Single(model.Graph.Output).Name);
        Assert.Equal(["Conv", "BatchNormalization", "Relu", "Conv", "BatchNormalization", "Add", "Relu", "AveragePool"], model.Graph.Node.Select(n => n.OpType));
        Assert.Equal([512L, 7, 7], chunks[0].InputShape);
    }

    [Fact]
    public void A_vgg_topology_graph_offers_the_input_of_conv_block_5_and_no_residual_block()
    {
        var model = VggGraph.Build();
        var cut = GraphCutter.Cut(model);

        var points = CutPointFinder.Find(model.Graph, cut.CutTensor);

        var stage = Assert.Single(points);
        Assert.Equal(new CutPoint(CutPointFinder.LastStage, "pool4"), stage);
        Assert.Equal(["Conv", "Relu", "Conv", "Relu", "Conv", "Relu", "MaxPool"],
            CutPointFinder.TailNodes(model.Graph, stage.Tensor, cut.CutTensor).Select(n => n.OpType));
    }

    [Fact]
    public void Cut_points_a_profile_declares_are_used_and_one_that_is_not_a_single_tensor_cut_is_refused()
    {
        var model = VggGraph.Build();
        var cut = GraphCutter.Cut(model);

        var declared = CutPointFinder.Find(model.Graph, cut.CutTensor, new Dictionary<string, string> { ["block4"] = "pool3" });
        var e = Assert.Throws<InvalidOperationException>(() =>
            CutPointFinder.Find(model.Graph, cut.CutTensor, new Dictionary<string, string> { ["middle"] = "conv13_W" }));

        Assert.Equal(new CutPoint("block4", "pool3"), Assert.Single(declared));
        Assert.Contains("'middle'", e.Message);
        Assert.Contains("not a single-tensor cut", e.Message);
    }
}

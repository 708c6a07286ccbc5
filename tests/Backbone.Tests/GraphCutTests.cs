using Google.Protobuf;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace Graft.Backbone.Tests;

public sealed class GraphCutTests
{
    [Fact]
    public void The_cut_of_a_vgg_topology_graph_is_pool5_with_the_classifier_gone()
    {
        var model = VggGraph.Build();
        var allParameters = model.Graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d));

        var cut = GraphCutter.Cut(model);

        Assert.Equal(VggGraph.Pool5, cut.CutTensor);
        Assert.Equal(VggGraph.Pool5, Assert.Single(model.Graph.Output).Name);
        Assert.DoesNotContain(model.Graph.Node, n => n.OpType is "Gemm" or "MatMul" or "Flatten" or "Dropout" or "Softmax");
        Assert.DoesNotContain(model.Graph.Initializer, t => t.Name.StartsWith("fc", StringComparison.Ordinal));
        Assert.Equal(VggGraph.ClassifierParameters, cut.RemovedParameters);
        Assert.Equal(allParameters - VggGraph.ClassifierParameters, cut.KeptParameters);
        Assert.Equal(9, cut.RemovedNodes); // Flatten, fc6-8 (Gemm), 2 ReLU, 2 Dropout, Softmax
    }

    [Fact]
    public void The_cut_vgg_graph_runs_a_batch_and_yields_7x7xC_per_image()
    {
        var model = VggGraph.Build();
        GraphCutter.Cut(model);
        using var session = new InferenceSession(model.ToByteArray());
        var input = new float[3 * 3 * 224 * 224];
        for (var i = 0; i < input.Length; i++) input[i] = (i % 255) / 255f;

        using var value = OrtValue.CreateTensorValueFromMemory(input, [3, 3, 224, 224]);
        using var outputs = session.Run(new RunOptions(), ["data"], [value], [VggGraph.Pool5]);

        Assert.Equal([3L, VggGraph.Pool5Channels, 7, 7], outputs[0].GetTensorTypeAndShape().Shape);
    }

    [Fact]
    public void A_cut_tensor_named_in_the_profile_wins_over_the_search()
    {
        var model = VggGraph.Build();

        var cut = GraphCutter.Cut(model, "pool4");

        Assert.Equal("pool4", cut.CutTensor);
        Assert.DoesNotContain(model.Graph.Node, n => n.Output.Contains(VggGraph.Pool5));
    }

    [Fact]
    public void A_cut_tensor_that_does_not_exist_is_refused_by_name()
    {
        var e = Assert.Throws<InvalidOperationException>(() => GraphCutter.Cut(VggGraph.Build(), "pool9"));

        Assert.Contains("pool9", e.Message);
    }

    [Fact]
    public async Task The_vgg16_profile_serves_pool5_features_of_a_vgg_model_supplied_by_path()
    {
        var path = VggGraph.WriteTemp(VggGraph.Build());
        try
        {
            await using var factory = new BackboneFactory(new Dictionary<string, string?>
            {
                ["Graft:Backbone:Profile"] = "vgg16",
                ["Graft:Backbone:ModelPath"] = path,
            });
            var client = factory.CreateBackboneClient();
            var image = await File.ReadAllBytesAsync(SampleImages.Load("train")[0].Path);

            var info = await client.DescribeAsync(new DescribeBackboneRequest());
            var reply = await client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });

            Assert.Equal("vgg16", info.Name);
            Assert.Equal(VggGraph.Pool5, info.CutTensor);
            Assert.Equal(VggGraph.Pool5Channels * 7 * 7, info.FeatureDimension);
            Assert.Contains("resize shorter side to 256, centre crop 224x224", info.Preprocessing);
            Assert.StartsWith("vgg16:", reply.Fingerprint);
            Assert.Equal(VggGraph.Pool5Channels * 7 * 7, reply.Dimension);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

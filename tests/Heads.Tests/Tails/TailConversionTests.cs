using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Heads.Tails;
using Graft.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Graft.Heads.Tests.Tails;

public sealed class TailConversionTests(ITestOutputHelper output)
{
    private const double Exactness = 1e-4;

    [Fact]
    public void The_untouched_resnet18_tails_reproduce_the_backbones_final_features_from_cut_point_features()
    {
        var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
        using var backbone = BackboneModel.Load(profile, "cpu", 2, NullLogger.Instance);
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var inputs = SampleImages.Load("test").Where((_, i) => i % 13 == 0).Take(8)
            .Select(s => preprocessor.Preprocess(File.ReadAllBytes(s.Path))).ToList();
        var cuts = backbone.CutPoints;
        var outputs = backbone.Run(inputs, [0, .. cuts.Select(c => c.Output)]);

        foreach (var (cut, k) in cuts.Select((c, k) => (c, k + 1)))
        {
            using var tail = OnnxTail.FromOnnx(cut.TailOnnx);
            tail.eval();
            using var scope = NewDisposeScope();
            var batch = stack(outputs.Select(o => tensor(o[k], [.. cut.Shape])).ToArray());

            var features = tail.call(batch);

            Assert.Equal([inputs.Count, (long)backbone.FeatureDimension], features.shape);
            var expected = tensor(outputs.SelectMany(o => o[0]).ToArray(), [inputs.Count, backbone.FeatureDimension]);
            var worst = features.sub(expected).abs().max().item<float>();
            output.WriteLine($"{cut.Name}: max |tail(cut) - final| = {worst:E2} over {inputs.Count} images");
            Assert.True(worst < Exactness, $"{cut.Name}: largest difference {worst} (limit {Exactness})");
        }
        Assert.Equal([CutPointFinder.LastBlock, CutPointFinder.LastStage], cuts.Select(c => c.Name));
    }

    [Fact]
    public void A_vgg_shaped_tail_built_in_code_converts_and_matches_onnx_runtime()
    {
        var model = VggGraph.Build();
        var cut = GraphCutter.Cut(model);
        GraphCutter.ExposeOutputs(model, ["pool4"]);
        var input = new float[2 * 3 * 224 * 224];
        var random = new Random(3);
        for (var i = 0; i < input.Length; i++) input[i] = (float)random.NextDouble();
        using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model));
        using var value = OrtValue.CreateTensorValueFromMemory(input, [2, 3, 224, 224]);
        using var results = session.Run(new RunOptions(), ["data"], [value], ["pool4", cut.CutTensor]);
        var pool4 = results[0].GetTensorDataAsSpan<float>().ToArray();
        var pool5 = results[1].GetTensorDataAsSpan<float>().ToArray();
        var shape = results[0].GetTensorTypeAndShape().Shape;

        var tailModel = CutPointFinder.TailModel(model, "pool4", cut.CutTensor, shape[1..]);
        using var tail = OnnxTail.FromGraph(tailModel.Graph);
        using var scope = NewDisposeScope();
        var features = tail.call(tensor(pool4, shape));

        Assert.Equal([2L, VggGraph.Pool5Channels * 7 * 7], features.shape);
        var worst = features.sub(tensor(pool5, [2, VggGraph.Pool5Channels * 7 * 7])).abs().max().item<float>();
        Assert.True(worst < Exactness, $"largest difference {worst}");
        // Three convolutions, each with weights and biases, all trainable.
        Assert.Equal(6, tail.parameters().Count());
    }

    [Fact]
    public void An_unsupported_op_is_refused_naming_it()
    {
        var model = VggGraph.Build();
        var cut = GraphCutter.Cut(model);
        var tailModel = CutPointFinder.TailModel(model, "pool4", cut.CutTensor, [VggGraph.BlockChannels[3], 14, 14]);
        tailModel.Graph.Node[1].OpType = "LeakyRelu";

        var e = Assert.Throws<TailConversionException>(() => OnnxTail.FromGraph(tailModel.Graph));

        Assert.Contains("LeakyRelu", e.Message);
        Assert.Contains("not support", e.Message);
    }
}

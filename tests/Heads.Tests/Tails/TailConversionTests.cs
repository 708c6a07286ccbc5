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
        using var backbone = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance);
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

public sealed class FineTunerTests(ITestOutputHelper output)
{
    [Fact]
    public void Fine_tuning_the_last_block_is_seeded_keeps_batch_norm_statistics_and_trains_the_tail_slower_than_the_head()
    {
        var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
        using var backbone = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance);
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var samples = SampleImages.Load("train").GroupBy(s => s.Label).SelectMany(g => g.Take(3)).ToList();
        var cut = backbone.FindCutPoint(CutPointFinder.LastBlock)!;
        var rows = backbone.Run(samples.Select(s => preprocessor.Preprocess(File.ReadAllBytes(s.Path))).ToList(), [cut.Output]);
        var labels = samples.Select(s => s.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var data = new Graft.Heads.Training.TrainingSet(samples.Count, (int)cut.Dimension, rows.SelectMany(r => r[0]).ToArray(), null,
            samples.Select(s => labels.IndexOf(s.Label)).ToArray(), labels);
        var settings = new FineTuneSettings { Epochs = 2, BatchSize = 10, ValidationFraction = 0.34 };
        using var pretrained = OnnxTail.FromOnnx(cut.TailOnnx);
        var before = pretrained.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());

        using var first = OnnxTail.FromOnnx(cut.TailOnnx);
        var reports = new List<Graft.Heads.Training.EpochReport>();
        var one = FineTuner.TrainClassifier(first, data, settings, new SynchronousProgress(reports.Add), CancellationToken.None);
        using var second = OnnxTail.FromOnnx(cut.TailOnnx);
        var two = FineTuner.TrainClassifier(second, data, settings, null, CancellationToken.None);

        output.WriteLine($"two fine-tunings of 20 rows x 2 epochs: {one.TrainingSeconds:F1} s + {two.TrainingSeconds:F1} s");
        Assert.Equal(2, reports.Count);
        Assert.Equal(one.Weights.Select(w => w.Data), two.Weights.Select(w => w.Data));
        var after = first.state_dict();
        foreach (var (name, value) in before.Where(p => p.Key.Contains("running_", StringComparison.Ordinal)))
        {
            Assert.True(value.eq(after[name]).all().item<bool>(), $"batch-norm statistic {name} changed");
        }
        // Adam moves every weight by about its learning rate per step: the tail (1e-4) a tenth as far as the head.
        var convName = before.Keys.First(k => k.EndsWith(".weight", StringComparison.Ordinal) && before[k].dim() == 4);
        var tailStep = after[convName].sub(before[convName]).abs().max().item<float>();
        Assert.InRange(tailStep, 1e-6f, 1e-3f);
        Assert.True(reports[1].TrainLoss < reports[0].TrainLoss, $"training loss went from {reports[0].TrainLoss} to {reports[1].TrainLoss}");
    }

    private sealed class SynchronousProgress(Action<Graft.Heads.Training.EpochReport> report) : IProgress<Graft.Heads.Training.EpochReport>
    {
        public void Report(Graft.Heads.Training.EpochReport value) => report(value);
    }
}

using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Heads.Tails;
using Graft.Heads.Training;
using Graft.V1;
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
        // Written back into its graph, the (here untouched) weights convert to the same module.
        var bytes = Google.Protobuf.MessageExtensions.ToByteArray(tailModel);
        using var again = OnnxTail.FromOnnx(tail.ToOnnx(bytes));
        Assert.Equal(0f, again.call(tensor(pool4, shape)).sub(features).abs().max().item<float>());
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

/// <summary>The one training loop at a fine-tuning depth, in process: seeded, batch-norm statistics untouched, the tail
/// moving at its own (lower) learning rate, and the trained weights written back into the tail graph.</summary>
public sealed class FineTuningTrainerTests(ITestOutputHelper output)
{
    [Fact]
    public void Fine_tuning_the_last_block_is_seeded_keeps_batch_norm_statistics_and_trains_the_tail_slower_than_the_head()
    {
        var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
        using var backbone = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance);
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var samples = SampleImages.Load("train").GroupBy(s => s.Label).SelectMany(g => g.Take(3)).ToList();
        var cut = backbone.FindCutPoint(CutPointFinder.LastBlock)!;
        var activations = backbone.Run(samples.Select(s => preprocessor.Preprocess(File.ReadAllBytes(s.Path))).ToList(), [cut.Output]);
        var options = Graft.Heads.Tests.Support.Tiny.Options();
        var settings = TrainingSettings.FromSpec(new HeadSpec
        {
            Name = "ft", Kind = HeadKind.Classifier, BackboneFingerprint = "fp", Depth = HeadDepth.LastBlock,
            Epochs = 2, BatchSize = 10, ValidationFraction = 0.34, Seed = 42, TailLearningRate = 1e-4,
        }, options);
        var trainer = new HeadTrainer(Microsoft.Extensions.Options.Options.Create(options));
        (TrainedHead Head, List<EpochReport> Reports) FineTune()
        {
            using var tail = new ReceivedTail(cut.TailOnnx, OnnxTail.FromOnnx(cut.TailOnnx), cut.Name);
            var builder = new TrainingSetBuilder(settings, options, tail);
            foreach (var (sample, values) in samples.Zip(activations))
            {
                var row = new FeatureRow { Label = sample.Label };
                row.Features.AddRange(values[0]);
                builder.Add(row);
            }
            var reports = new List<EpochReport>();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var head = trainer.Train(settings, builder.Build(), tail, new SynchronousProgress(reports.Add), CancellationToken.None);
            output.WriteLine($"fine-tuning {samples.Count} rows x 2 epochs: {clock.Elapsed.TotalSeconds:F1} s");
            return (head, reports);
        }

        var (one, reports) = FineTune();
        var (two, _) = FineTune();

        Assert.Equal(2, reports.Count);
        Assert.Equal(one.Weights.Select(w => w.Data), two.Weights.Select(w => w.Data));
        Assert.Equal(one.Tail, two.Tail);
        var before = Initializers(cut.TailOnnx);
        var after = Initializers(one.Tail!);
        var graph = Onnx.ModelProto.Parser.ParseFrom(cut.TailOnnx).Graph;
        var statistics = graph.Node.Where(n => n.OpType == "BatchNormalization").SelectMany(n => new[] { n.Input[3], n.Input[4] }).ToList();
        Assert.NotEmpty(statistics);
        Assert.All(statistics, name => Assert.Equal(before[name], after[name]));
        // Adam moves every weight by about its learning rate per step: the tail (1e-4) a tenth as far as the head.
        var conv = graph.Node.First(n => n.OpType == "Conv").Input[1];
        var tailStep = before[conv].Zip(after[conv]).Max(p => Math.Abs(p.First - p.Second));
        Assert.InRange(tailStep, 1e-6f, 1e-3f);
        Assert.True(reports[1].TrainLoss < reports[0].TrainLoss, $"training loss went from {reports[0].TrainLoss} to {reports[1].TrainLoss}");
        Assert.Equal("last-block", one.Manifest.CutPoint);
        Assert.Equal(512, one.Manifest.InputDimension);
    }

    private static Dictionary<string, float[]> Initializers(byte[] onnx)
        => Onnx.ModelProto.Parser.ParseFrom(onnx).Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float).ToDictionary(t => t.Name,
            t => t.FloatData.Count > 0 ? t.FloatData.ToArray() : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray());

    private sealed class SynchronousProgress(Action<EpochReport> report) : IProgress<EpochReport>
    {
        public void Report(EpochReport value) => report(value);
    }
}

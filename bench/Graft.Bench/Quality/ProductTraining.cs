using Graft.Heads;
using Graft.Heads.Tails;
using Graft.Heads.Training;
using Graft.V1;
using Microsoft.Extensions.Options;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Graft.Bench.Quality;

/// <summary>How deep a head trains, as in the product's <c>HeadDepth</c>: a linear probe or an MLP on the frozen final
/// features, or a new linear layer on a fine-tuned tail from an earlier cut point.</summary>
public enum CurveDepth { Probe, Mlp, LastBlock, LastStage }

/// <summary>Training rows for one fit: features at the depth's input (final features or a cut point, flattened), a
/// class per row, a length per row, and the source image of each row (augmented views share their image's).</summary>
public sealed record CurveRows(int Rows, int Dimension, float[] Features, int[] Classes, double[] Lengths, int[] Sources, bool[] Augmented);

/// <summary>A trained head that can score test rows, and what training reported.</summary>
public interface ITrainedCurveHead : IDisposable
{
    /// <summary>Class per row (classifier) or value per row (regressor) for flattened test rows.</summary>
    double[] Predict(float[] features, int rows);

    double TrainingSeconds { get; }
    int EpochsRun { get; }
}

/// <summary>Fine-tuning choices the curve may vary (null = the product default).</summary>
public sealed record CurveTrainingChoices(double? HeadLearningRate = null, double? TailLearningRate = null, double? WeightDecay = null,
    int? Epochs = null, int? Patience = null)
{
    public static readonly CurveTrainingChoices ProductDefaults = new();

    public string Describe() => this == ProductDefaults ? "product defaults" :
        string.Join(", ", new (string, object?)[] { ("head lr", HeadLearningRate), ("tail lr", TailLearningRate), ("weight decay", WeightDecay), ("epochs", Epochs), ("patience", Patience) }
            .Where(p => p.Item2 is not null).Select(p => $"{p.Item1} {p.Item2}"));
}

/// <summary>
/// The one place the curve calls HeadService's training code, in process. Today: <see cref="HeadTrainer"/> for the
/// frozen depths and <see cref="FineTuner"/> (HeadService/Tails) for the fine-tuned ones. When HeadService has one
/// training loop for every depth, only this class changes.
/// </summary>
public sealed class ProductTraining
{
    private readonly HeadTrainer _trainer;
    private static readonly string[] ClassLabels = Data.FashionMnist.Classes.Select(c => c.Name).ToArray();

    public ProductTraining()
    {
        // The bench uses both cores for training (the service default leaves one for Predict).
        _trainer = new HeadTrainer(Options.Create(new HeadOptions { TrainingThreads = Environment.ProcessorCount }));
    }

    /// <summary>Trains a classifier at <paramref name="depth"/>; <paramref name="tailOnnx"/> is the cut point's tail for fine-tuned depths.</summary>
    public ITrainedCurveHead TrainClassifier(CurveDepth depth, CurveRows rows, byte[]? tailOnnx, long[]? cutShape, CurveTrainingChoices choices) => depth switch
    {
        CurveDepth.Probe or CurveDepth.Mlp => TrainFrozen(depth, HeadKind.Classifier, rows),
        _ => FineTune(rows, tailOnnx ?? throw new ArgumentNullException(nameof(tailOnnx)), cutShape!, choices),
    };

    /// <summary>Trains a length regressor on frozen final features (FineTuner has no regressor yet).</summary>
    public ITrainedCurveHead TrainRegressor(CurveDepth depth, CurveRows rows) => depth switch
    {
        CurveDepth.Probe or CurveDepth.Mlp => TrainFrozen(depth, HeadKind.Regressor, rows),
        _ => throw new NotSupportedException($"HeadService cannot fine-tune a regressor at {depth} yet (FineTuner is classifier-only)."),
    };

    private ITrainedCurveHead TrainFrozen(CurveDepth depth, HeadKind kind, CurveRows rows)
    {
        // The same spec as the bench's Gateway rows (30 epochs, every row trains, seed 42): the MLP is the product's
        // default hidden layer of 256, the probe has no hidden layer.
        var spec = new HeadSpec { Name = "curve", Kind = kind, Epochs = 30, ValidationFraction = 0, Seed = 42, BackboneFingerprint = "bench", Description = "bench curve" };
        if (depth == CurveDepth.Probe) spec.Hidden = new HiddenLayers();
        var settings = TrainingSettings.FromSpec(spec, new HeadOptions());
        var data = new TrainingSet(rows.Rows, rows.Dimension, rows.Features, kind == HeadKind.Regressor ? rows.Lengths : null,
            kind == HeadKind.Classifier ? rows.Classes : null, ClassLabels);
        var trained = _trainer.Train(settings, data, null, CancellationToken.None);
        return new FrozenHead(trained);
    }

    private static ITrainedCurveHead FineTune(CurveRows rows, byte[] tailOnnx, long[] cutShape, CurveTrainingChoices choices)
    {
        var defaults = new FineTuneSettings();
        var settings = defaults with
        {
            HeadLearningRate = choices.HeadLearningRate ?? defaults.HeadLearningRate,
            TailLearningRate = choices.TailLearningRate ?? defaults.TailLearningRate,
            WeightDecay = choices.WeightDecay ?? defaults.WeightDecay,
            Epochs = choices.Epochs ?? defaults.Epochs,
            Patience = choices.Patience ?? defaults.Patience,
        };
        var tail = OnnxTail.FromOnnx(tailOnnx);
        try
        {
            var data = new TrainingSet(rows.Rows, rows.Dimension, rows.Features, null, rows.Classes, ClassLabels);
            var result = FineTuner.TrainClassifier(tail, data, settings, null, CancellationToken.None);
            return new FineTunedHead(tail, cutShape, result);
        }
        catch
        {
            tail.Dispose();
            throw;
        }
    }

    private sealed class FrozenHead(TrainedHead trained) : ITrainedCurveHead
    {
        private readonly Graft.Heads.Serving.LoadedHead _head = new(trained.Manifest, trained.Weights, CPU);

        public double TrainingSeconds => trained.Manifest.Metrics.TrainingSeconds;
        public int EpochsRun => trained.Manifest.Metrics.EpochsRun;

        public double[] Predict(float[] features, int rows)
        {
            // Through the serving code, one row at a time as Predict runs it.
            var dimension = features.Length / rows;
            var result = new double[rows];
            for (var i = 0; i < rows; i++)
            {
                if (!_head.TryRun(features.AsSpan(i * dimension, dimension), 1, out var output)) throw new ObjectDisposedException("head");
                result[i] = output.Kind == HeadKind.Regressor ? output.Value : Array.IndexOf(ClassLabels, output.Top[0].Label);
            }
            return result;
        }

        public void Dispose() => _head.Dispose();
    }

    private sealed class FineTunedHead(OnnxTail tail, long[] cutShape, FineTunedClassifier result) : ITrainedCurveHead
    {
        private readonly Tensor _weight = TensorOf(result, "head.weight");
        private readonly Tensor _bias = TensorOf(result, "head.bias");

        public double TrainingSeconds => result.TrainingSeconds;
        public int EpochsRun => result.EpochsRun;

        public double[] Predict(float[] features, int rows)
        {
            var dimension = (int)cutShape.Aggregate(1L, (a, d) => a * d);
            var classes = new double[rows];
            tail.eval();
            using var noGrad = no_grad();
            const int chunk = 100;
            for (var start = 0; start < rows; start += chunk)
            {
                using var scope = NewDisposeScope();
                var count = Math.Min(chunk, rows - start);
                var x = tensor(features.AsSpan(start * dimension, count * dimension).ToArray(), [count, .. cutShape]);
                var logits = tail.call(x).matmul(_weight.t()).add(_bias);
                var picked = logits.argmax(1).data<long>().ToArray();
                for (var i = 0; i < count; i++) classes[start + i] = picked[i];
            }
            return classes;
        }

        public void Dispose()
        {
            tail.Dispose();
            _weight.Dispose();
            _bias.Dispose();
        }

        private static Tensor TensorOf(FineTunedClassifier result, string name)
        {
            var w = result.Weights.Single(w => w.Name == name);
            return tensor(w.Data, w.Shape);
        }
    }
}

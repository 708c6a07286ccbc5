using Graft.Heads;
using Graft.Heads.Serving;
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

/// <summary>Training choices the curve may vary (null = the recipe of <see cref="ProductTraining.Spec"/>).</summary>
public sealed record CurveTrainingChoices(double? HeadLearningRate = null, double? TailLearningRate = null, double? WeightDecay = null,
    int? Epochs = null, int? Patience = null, double? ValidationFraction = null)
{
    public static readonly CurveTrainingChoices ProductDefaults = new();

    public string Describe() => this == ProductDefaults ? "default recipe" :
        string.Join(", ", new (string, object?)[] { ("head lr", HeadLearningRate), ("tail lr", TailLearningRate), ("weight decay", WeightDecay), ("epochs", Epochs), ("patience", Patience), ("validation", ValidationFraction) }
            .Where(p => p.Item2 is not null).Select(p => $"{p.Item1} {p.Item2}"));
}

/// <summary>
/// The one place the curve calls HeadService's training code, in process: <see cref="HeadTrainer"/>, the one training
/// loop for every depth (a fine-tuned depth gets the cut point's tail as a <see cref="ReceivedTail"/>, as HeadService's
/// Train does after assembling the tail pieces), and <see cref="LoadedHead"/>, the serving code, to score test rows.
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

    /// <summary>The spec of a fit. Frozen depths: the bench's quality-row spec (30 epochs, every row trains, seed 42),
    /// so the MLP here is comparable with the Gateway row above. Fine-tuned depths: HeadService's own defaults (what
    /// `graft train --depth last-block` gets: 15 epochs on every row, tail lr 1e-4, weight decay 1e-4, seed 42);
    /// <paramref name="choices"/> override either.</summary>
    public static HeadSpec Spec(CurveDepth depth, HeadKind kind, CurveTrainingChoices choices)
    {
        var spec = new HeadSpec
        {
            Name = "curve", Kind = kind, Seed = 42, BackboneFingerprint = "bench", Description = "bench curve",
            Depth = depth switch
            {
                CurveDepth.Probe => HeadDepth.Probe,
                CurveDepth.Mlp => HeadDepth.Mlp,
                CurveDepth.LastBlock => HeadDepth.LastBlock,
                _ => HeadDepth.LastStage,
            },
        };
        if (depth is CurveDepth.Probe or CurveDepth.Mlp)
        {
            spec.Epochs = choices.Epochs ?? 30;
            spec.ValidationFraction = 0;
        }
        else
        {
            if (choices.Epochs is { } epochs) spec.Epochs = epochs;
            if (choices.ValidationFraction is { } validation) spec.ValidationFraction = validation;
            if (choices.Patience is { } patience) spec.Patience = patience;
            if (choices.TailLearningRate is { } tailLr) spec.TailLearningRate = tailLr;
        }
        if (choices.HeadLearningRate is { } lr) spec.LearningRate = lr;
        if (choices.WeightDecay is { } wd) spec.WeightDecay = wd;
        return spec;
    }

    /// <summary>Trains a head at <paramref name="depth"/>; <paramref name="tailOnnx"/> is the cut point's tail for fine-tuned depths.</summary>
    public ITrainedCurveHead Train(CurveDepth depth, HeadKind kind, CurveRows rows, byte[]? tailOnnx, CurveTrainingChoices choices)
    {
        var settings = TrainingSettings.FromSpec(Spec(depth, kind, choices), new HeadOptions());
        var data = new TrainingSet(rows.Rows, rows.Dimension, rows.Features, kind == HeadKind.Regressor ? rows.Lengths : null,
            kind == HeadKind.Classifier ? rows.Classes : null, ClassLabels)
        {
            Sources = rows.Sources.Select(s => (long)s).ToArray(),
            Augmented = rows.Augmented,
        };
        using var tail = settings.Depth.FineTunes()
            ? new ReceivedTail(tailOnnx ?? throw new ArgumentNullException(nameof(tailOnnx)), OnnxTail.FromOnnx(tailOnnx), settings.CutPoint)
            : null;
        var trained = _trainer.Train(settings, data, tail, null, CancellationToken.None);
        return new ServedHead(trained);
    }

    /// <summary>The trained version loaded by the serving code, as HeadService's Predict runs it (one row at a time).</summary>
    private sealed class ServedHead(TrainedHead trained) : ITrainedCurveHead
    {
        // The registry names the tail file when it publishes a fine-tuned version; serving reads "fine-tuned" from it.
        private readonly LoadedHead _head = new(trained.Tail is null ? trained.Manifest : trained.Manifest with { TailFile = "tail.onnx" },
            trained.Weights, CPU, trained.Tail);

        public double TrainingSeconds => trained.Manifest.Metrics.TrainingSeconds;
        public int EpochsRun => trained.Manifest.Metrics.EpochsRun;

        public double[] Predict(float[] features, int rows)
        {
            var dimension = features.Length / rows;
            var fineTuned = trained.Tail is not null;
            var result = new double[rows];
            for (var i = 0; i < rows; i++)
            {
                var row = features.AsSpan(i * dimension, dimension);
                if (!_head.TryRun(fineTuned ? [] : row, fineTuned ? row : [], 1, out var output)) throw new ObjectDisposedException("head");
                result[i] = output.Kind == HeadKind.Regressor ? output.Value : Array.IndexOf(ClassLabels, output.Top[0].Label);
            }
            return result;
        }

        public void Dispose() => _head.Dispose();
    }
}

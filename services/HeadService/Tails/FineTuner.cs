using System.Diagnostics;
using Graft.Heads.Model;
using Graft.Heads.Registry;
using Graft.Heads.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Graft.Heads.Tails;

/// <summary>How a tail is fine-tuned: the defaults follow the issue's prototype on Fashion-MNIST (tail at 1e-4, new
/// layers at 1e-3, batch-norm statistics frozen, 15 epochs), plus weight decay and early stopping on validation.</summary>
public sealed record FineTuneSettings
{
    public double HeadLearningRate { get; init; } = 1e-3;

    /// <summary>The pretrained tail moves ten times slower than the new layers: it starts good, they start random.
    /// 0 keeps the tail frozen (the same protocol as a frozen-feature probe, for comparison).</summary>
    public double TailLearningRate { get; init; } = 1e-4;

    public double WeightDecay { get; init; } = 1e-4;

    public int Epochs { get; init; } = 15;

    public int BatchSize { get; init; } = 32;

    /// <summary>Epochs without a better validation loss before stopping (0 = never); the best epoch's weights are kept.</summary>
    public int Patience { get; init; } = 3;

    public double ValidationFraction { get; init; } = 0.2;

    public long Seed { get; init; } = 42;
}

/// <summary>A fine-tuned classifier: the tail's and the new layer's weights (state-dict names, "tail." / "head."
/// prefixed) and how training went.</summary>
public sealed record FineTunedClassifier(IReadOnlyList<NamedTensor> Weights, double ValidationAccuracy, int EpochsRun, double TrainingSeconds);

/// <summary>
/// Trains a backbone tail (<see cref="OnnxTail"/>, from its pretrained weights) and a new linear classifier on top, on
/// cut-point features. Seeded: the split, the initialisation and the batch order come from <see cref="FineTuneSettings.Seed"/>,
/// so the same data and seed give the same weights on a host.
/// </summary>
public static class FineTuner
{
    /// <summary>Fine-tunes <paramref name="tail"/> (modified in place) with a new linear layer for the classes of
    /// <paramref name="data"/> (its rows are flattened cut-point features of shape <see cref="OnnxTail.InputShape"/>).</summary>
    public static FineTunedClassifier TrainClassifier(OnnxTail tail, TrainingSet data, FineTuneSettings settings, IProgress<EpochReport>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var classes = data.Classes ?? throw HeadException.Invalid("A fine-tuned classifier needs a class label on every row.");
        var cutDimension = tail.InputShape.Aggregate(1L, (a, d) => a * d);
        if (data.Dimension != cutDimension)
        {
            throw HeadException.Invalid($"Rows have {data.Dimension} values but the tail's cut point has {cutDimension} ([{string.Join(", ", tail.InputShape)}]).");
        }
        var (validationRows, trainRows) = StratifiedSplit(classes, settings.ValidationFraction, settings.Seed);

        using var features = tensor(data.Features, [data.Rows, .. tail.InputShape]);
        using var labels = tensor(classes.Select(c => (long)c).ToArray());
        nn.Module<Tensor, Tensor> head;
        lock (TorchRuntime.InitialisationLock)
        {
            manual_seed(settings.Seed);
            head = nn.Linear(ProbeOutputDimension(tail), data.Labels.Count);
        }
        using var _ = head;
        using var tailOptimizer = settings.TailLearningRate > 0
            ? optim.Adam(tail.parameters(), lr: settings.TailLearningRate, weight_decay: settings.WeightDecay)
            : null;
        using var headOptimizer = optim.Adam(head.parameters(), lr: settings.HeadLearningRate, weight_decay: settings.WeightDecay);
        var parameters = tail.named_parameters().Select(p => ("tail." + p.name, p.parameter))
            .Concat(head.named_parameters().Select(p => ("head." + p.name, p.parameter))).ToList();

        var shuffle = new Random(unchecked((int)(settings.Seed * 31 + 7)));
        var order = trainRows.ToArray();
        var bestLoss = double.PositiveInfinity;
        var bestAccuracy = 0.0;
        var sinceBest = 0;
        var epochsRun = 0;
        Dictionary<string, Tensor>? best = null;
        try
        {
            for (var epoch = 1; epoch <= settings.Epochs; epoch++)
            {
                tail.train();
                shuffle.Shuffle(order);
                double lossSum = 0;
                for (var start = 0; start < order.Length; start += settings.BatchSize)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var count = Math.Min(settings.BatchSize, order.Length - start);
                    var index = tensor(order.AsSpan(start, count).ToArray().Select(i => (long)i).ToArray());
                    tailOptimizer?.zero_grad();
                    headOptimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(head.call(tail.call(features.index_select(0, index))), labels.index_select(0, index));
                    loss.backward();
                    tailOptimizer?.step();
                    headOptimizer.step();
                    lossSum += loss.item<float>() * count;
                }
                epochsRun = epoch;
                var (validationLoss, accuracy) = Evaluate(tail, head, features, labels, validationRows.Length > 0 ? validationRows : trainRows);
                progress?.Report(new EpochReport(epoch, settings.Epochs, lossSum / order.Length, validationLoss, "accuracy", accuracy, clock.Elapsed.TotalSeconds));
                if (validationLoss < bestLoss)
                {
                    bestLoss = validationLoss;
                    bestAccuracy = accuracy;
                    sinceBest = 0;
                    DisposeAll(best);
                    best = parameters.ToDictionary(p => p.Item1, p => p.parameter.detach().clone());
                }
                else if (settings.Patience > 0 && ++sinceBest >= settings.Patience)
                {
                    break;
                }
            }
            using (no_grad())
            {
                foreach (var (name, parameter) in parameters) parameter.copy_(best![name]);
            }
        }
        finally
        {
            DisposeAll(best);
        }
        var weights = parameters
            .Select(p => new NamedTensor(p.Item1, p.parameter.shape, p.parameter.detach().cpu().data<float>().ToArray()))
            .ToList();
        return new FineTunedClassifier(weights, bestAccuracy, epochsRun, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Seeded stratified split: each class gives <paramref name="fraction"/> of its rows to validation.</summary>
    public static (int[] Validation, int[] Train) StratifiedSplit(int[] classes, double fraction, long seed)
    {
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var validation = new List<int>();
        var train = new List<int>();
        foreach (var group in Enumerable.Range(0, classes.Length).GroupBy(i => classes[i]).OrderBy(g => g.Key))
        {
            var rows = group.ToArray();
            random.Shuffle(rows);
            var held = (int)Math.Floor(rows.Length * fraction);
            validation.AddRange(rows[..held]);
            train.AddRange(rows[held..]);
        }
        return ([.. validation], [.. train]);
    }

    private static long ProbeOutputDimension(OnnxTail tail)
    {
        using var noGrad = no_grad();
        using var probe = zeros([1, .. tail.InputShape]);
        tail.eval();
        using var output = tail.call(probe);
        return output.shape[1];
    }

    private static (double Loss, double Accuracy) Evaluate(OnnxTail tail, nn.Module<Tensor, Tensor> head, Tensor features, Tensor labels, int[] rows)
    {
        tail.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var index = tensor(rows.Select(i => (long)i).ToArray());
        var output = head.call(tail.call(features.index_select(0, index)));
        var truth = labels.index_select(0, index);
        return (nn.functional.cross_entropy(output, truth).item<float>(), output.argmax(1).eq(truth).to(ScalarType.Float32).mean().item<float>());
    }

    private static void DisposeAll(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var t in state.Values) t.Dispose();
    }
}

using System.Diagnostics;
using Graft.Heads.Model;
using Graft.Heads.Registry;
using Graft.Heads.Tails;
using Graft.V1;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Graft.Heads.Training;

/// <summary>Progress after one epoch.</summary>
public sealed record EpochReport(int Epoch, int EpochsTotal, double TrainLoss, double ValidationLoss, string MetricName, double Metric, double ElapsedSeconds);

/// <summary>A trained head ready to publish: its manifest (version not yet assigned), its weights, and for a fine-tuned
/// head its retrained tail (ONNX).</summary>
public sealed record TrainedHead(HeadManifest Manifest, IReadOnlyList<NamedTensor> Weights, byte[]? Tail = null);

/// <summary>
/// Trains one head from rows in memory, at every depth: the network is an optional backbone tail (fine-tuning depths:
/// rows are cut-point activations, the tail starts from the backbone's weights, its batch-norm statistics stay frozen)
/// followed by the head layers (none hidden for a probe). Seeded split by source image (<see cref="ValidationSplit"/>),
/// standardisation of the head's input fitted on the training rows (the final features, or the pretrained tail's
/// output), Adam with weight decay (the tail in its own optimizer at <c>tail_learning_rate</c>), optional early
/// stopping that restores the best epoch, and the validation metrics stored with the version. Same seed and data give
/// the same weights on a host.
/// </summary>
public sealed class HeadTrainer(IOptions<HeadOptions> options)
{
    /// <summary>Rows per forward pass when evaluating or measuring a tail: bounds activation memory (a last-stage
    /// batch of 64 holds about 100 MB of intermediate activations).</summary>
    private const int TailEvaluationBatch = 64;
    private const int FrozenEvaluationBatch = 8192;

    private readonly Device _device = TorchRuntime.Initialise(options.Value.EffectiveTrainingThreads);

    public TrainedHead Train(TrainingSettings settings, TrainingSet data, IProgress<EpochReport>? progress, CancellationToken cancellationToken)
        => Train(settings, data, null, progress, cancellationToken);

    /// <summary>Trains a head; with <paramref name="tail"/> (fine-tuning depths) the tail is trained in place too.</summary>
    public TrainedHead Train(TrainingSettings settings, TrainingSet data, ReceivedTail? tail, IProgress<EpochReport>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var h = settings.Hyperparameters;
        var regressor = settings.Kind == HeadKind.Regressor;
        if (settings.Depth.FineTunes() != tail is not null)
        {
            throw new InvalidOperationException($"Depth {settings.Depth.Name()} {(tail is null ? "needs" : "takes no")} tail.");
        }

        var (validationIdx, trainIdx) = ValidationSplit.Split(data, h.ValidationFraction, h.Seed, stratify: !regressor);
        var validationCount = validationIdx.Length;
        var metricIdx = validationCount > 0 ? validationIdx : trainIdx;

        double targetMean = 0, targetStd = 1;
        if (regressor)
        {
            targetMean = trainIdx.Average(i => data.Values![i]);
            var variance = trainIdx.Average(i => (data.Values![i] - targetMean) * (data.Values[i] - targetMean));
            targetStd = variance > 1e-24 ? Math.Sqrt(variance) : 1;
        }
        var outputs = regressor ? 1 : data.Labels.Count;
        using var y = Targets(data, regressor, targetMean, targetStd);

        // Every row once, on the device; batches are index_select-ed from it. Frozen depths standardise the features
        // here, once; a tail takes the raw activations and its output is standardised inside the network.
        float[] mean, std;
        Tensor x;
        TailStandardisation? standardise = null;
        if (tail is null)
        {
            (mean, std) = FitStandardisation(data, trainIdx);
            x = tensor(Standardise(data, mean, std), [data.Rows, data.Dimension]).to(_device);
        }
        else
        {
            tail.Module.to(_device);
            tail.Module.eval(); // batch-norm statistics stay ImageNet's; OnnxTail also never updates them
            x = tensor(data.Features, [data.Rows, .. tail.InputShape]).to(_device);
            (mean, std) = FitTailStandardisation(tail.Module, x, trainIdx);
            standardise = new TailStandardisation(tensor(mean).to(_device), tensor(std).to(_device));
        }
        using var _x = x;
        using var _standardise = standardise;
        var headInputs = mean.Length;

        HeadNetwork head;
        lock (TorchRuntime.InitialisationLock)
        {
            // libtorch's default generator is global: seed and construct without another job in between.
            manual_seed(h.Seed);
            head = new HeadNetwork(headInputs, h.HiddenSizes, outputs, h.Dropout);
        }
        using var _head = head;
        head.to(_device);
        using var dropoutGenerator = new Generator(unchecked((ulong)h.Seed), _device);
        head.UseDropoutGenerator(dropoutGenerator);
        using var headOptimizer = new ScalarSafeAdam(head.parameters(), h.LearningRate, h.WeightDecay);
        var trainTail = tail is not null && h.TailLearningRate > 0;
        if (tail is not null && !trainTail)
        {
            // A tail at learning rate 0 stays pretrained; no gradient needs to reach it.
            foreach (var p in tail.Module.parameters()) p.requires_grad_(false);
        }
        using var tailOptimizer = trainTail ? new ScalarSafeAdam(tail!.Module.parameters(), h.TailLearningRate, h.WeightDecay) : null;
        var trained = head.named_parameters().Select(p => ("head." + p.name, p.parameter))
            .Concat(trainTail ? tail!.Module.named_parameters().Select(p => ("tail." + p.name, p.parameter)) : [])
            .ToList();

        Tensor Forward(Tensor input) => tail is null ? head.call(input) : head.call(standardise!.Apply(tail.Module.call(input)));

        var evaluationBatch = tail is null ? FrozenEvaluationBatch : TailEvaluationBatch;
        using var metricIndex = tensor(metricIdx.Select(i => (long)i).ToArray(), device: _device);
        using var yMetric = y.index_select(0, metricIndex);
        var shuffle = new Random(unchecked((int)(h.Seed * 31 + 7)));
        var batchOrder = trainIdx.ToArray();
        var best = double.PositiveInfinity;
        var sinceBest = 0;
        var bestEpoch = 0;
        Dictionary<string, Tensor>? bestState = null;
        Evaluation? last = null;
        double trainLoss = double.NaN;
        var epochsRun = 0;
        var metricName = (regressor ? "mae" : "accuracy") + (validationCount > 0 ? "" : "_train");
        try
        {
            for (var epoch = 1; epoch <= h.Epochs; epoch++)
            {
                head.train();
                shuffle.Shuffle(batchOrder);
                double lossSum = 0;
                for (var start = 0; start < batchOrder.Length; start += h.BatchSize)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var count = Math.Min(h.BatchSize, batchOrder.Length - start);
                    var index = tensor(batchOrder.AsSpan(start, count).ToArray().Select(i => (long)i).ToArray(), device: _device);
                    headOptimizer.zero_grad();
                    tailOptimizer?.zero_grad();
                    var loss = Loss(Forward(x.index_select(0, index)), y.index_select(0, index), regressor);
                    loss.backward();
                    headOptimizer.step();
                    tailOptimizer?.step();
                    lossSum += loss.item<float>() * count;
                }
                trainLoss = lossSum / batchOrder.Length;
                epochsRun = epoch;

                last?.Dispose();
                last = Evaluate(Forward, head, x, metricIndex, yMetric, regressor, targetStd, evaluationBatch, cancellationToken);
                progress?.Report(new EpochReport(epoch, h.Epochs, trainLoss, last.Loss, metricName, last.Metric, clock.Elapsed.TotalSeconds));
                if (h.Patience > 0)
                {
                    if (last.Loss < best)
                    {
                        best = last.Loss;
                        bestEpoch = epoch;
                        sinceBest = 0;
                        DisposeState(bestState);
                        bestState = trained.ToDictionary(p => p.Item1, p => p.parameter.detach().clone());
                    }
                    else if (++sinceBest >= h.Patience)
                    {
                        break;
                    }
                }
            }
            if (bestState is not null && bestEpoch != epochsRun)
            {
                using var noGrad = no_grad();
                foreach (var (name, parameter) in trained)
                {
                    parameter.copy_(bestState[name]);
                }
                // The last evaluation scored other weights; score the restored ones (the only extra pass).
                last?.Dispose();
                last = Evaluate(Forward, head, x, metricIndex, yMetric, regressor, targetStd, evaluationBatch, cancellationToken);
            }

            var metrics = ComputeMetrics(last!.Outputs, data, metricIdx, trainIdx, regressor, targetMean, targetStd) with
            {
                TrainRows = trainIdx.Length,
                ValidationRows = validationCount,
                EpochsRun = epochsRun,
                TrainingSeconds = clock.Elapsed.TotalSeconds,
                FinalTrainLoss = trainLoss,
                ValidationLoss = last.Loss,
            };
            var weights = head.named_parameters()
                .Select(p => new NamedTensor(p.name, p.parameter.shape, p.parameter.detach().cpu().data<float>().ToArray()))
                .ToList();
            var tailOnnx = tail?.Module.ToOnnx(tail.Onnx);
            var manifest = new HeadManifest
            {
                Name = settings.Name,
                Kind = settings.Kind,
                Labels = data.Labels,
                InputDimension = headInputs,
                BackboneFingerprint = settings.BackboneFingerprint,
                HiddenSizes = h.HiddenSizes,
                Dropout = h.Dropout,
                FeatureMean = mean,
                FeatureStd = std,
                TargetMean = targetMean,
                TargetStd = targetStd,
                Hyperparameters = h,
                Description = settings.Description,
                Dataset = settings.Dataset,
                KeepTrainingData = settings.KeepTrainingData,
                Metrics = metrics,
                Created = DateTimeOffset.UtcNow,
                WeightsSha256 = new string('0', 64),
                ParameterCount = weights.Sum(w => (long)w.Data.Length),
                Depth = settings.Depth,
                DepthReason = settings.DepthReason,
                Augment = settings.Augment,
                CutPoint = settings.CutPoint,
                CutShape = tail?.InputShape ?? [],
                TailParameterCount = tail?.Module.parameters().Sum(p => p.numel()) ?? 0,
            };
            return new TrainedHead(manifest, weights, tailOnnx);
        }
        finally
        {
            DisposeState(bestState);
            last?.Dispose();
        }
    }

    /// <summary>x' = (tail(x) - mean) / std with constants fitted once on the pretrained tail's output, so the head
    /// starts on the same footing as a frozen head; the tail then adapts under it.</summary>
    private sealed class TailStandardisation(Tensor mean, Tensor std) : IDisposable
    {
        public Tensor Apply(Tensor features) => features.sub(mean).div(std);

        public void Dispose()
        {
            mean.Dispose();
            std.Dispose();
        }
    }

    private static float[] Standardise(TrainingSet data, float[] mean, float[] std)
    {
        var d = data.Dimension;
        var result = new float[data.Features.Length];
        for (var r = 0; r < data.Rows; r++)
        {
            var source = data.Features.AsSpan(r * d, d);
            var target = result.AsSpan(r * d, d);
            for (var j = 0; j < d; j++)
            {
                target[j] = (source[j] - mean[j]) / std[j];
            }
        }
        return result;
    }

    /// <summary>Standardisation of the pretrained tail's output over the training rows (one forward pass, no gradient).</summary>
    private static (float[] Mean, float[] Std) FitTailStandardisation(OnnxTail tail, Tensor x, int[] trainRows)
    {
        using var noGrad = no_grad();
        var sumSq = default(double[]);
        var sums = default(double[]);
        foreach (var chunk in trainRows.Chunk(TailEvaluationBatch))
        {
            using var scope = NewDisposeScope();
            var index = tensor(chunk.Select(i => (long)i).ToArray(), device: x.device);
            var features = tail.call(x.index_select(0, index)).to_type(ScalarType.Float64).cpu();
            var s = features.sum(0L).data<double>().ToArray();
            var q = features.square().sum(0L).data<double>().ToArray();
            sums ??= new double[s.Length];
            sumSq ??= new double[s.Length];
            for (var j = 0; j < s.Length; j++)
            {
                sums[j] += s[j];
                sumSq[j] += q[j];
            }
        }
        var d = sums!.Length;
        var mean = new float[d];
        var std = new float[d];
        for (var j = 0; j < d; j++)
        {
            var m = sums[j] / trainRows.Length;
            var variance = Math.Max(0, sumSq![j] / trainRows.Length - m * m);
            mean[j] = (float)m;
            std[j] = variance > 1e-12 ? (float)Math.Sqrt(variance) : 1f;
        }
        return (mean, std);
    }

    private static (float[] Mean, float[] Std) FitStandardisation(TrainingSet data, int[] rows)
    {
        var d = data.Dimension;
        var sum = new double[d];
        var sumSq = new double[d];
        foreach (var r in rows)
        {
            var row = data.Features.AsSpan(r * d, d);
            for (var j = 0; j < d; j++)
            {
                sum[j] += row[j];
                sumSq[j] += (double)row[j] * row[j];
            }
        }
        var mean = new float[d];
        var std = new float[d];
        for (var j = 0; j < d; j++)
        {
            var m = sum[j] / rows.Length;
            var variance = Math.Max(0, sumSq[j] / rows.Length - m * m);
            mean[j] = (float)m;
            // A constant feature (common after ReLU + pooling) carries no signal; leave it unscaled.
            std[j] = variance > 1e-12 ? (float)Math.Sqrt(variance) : 1f;
        }
        return (mean, std);
    }

    private Tensor Targets(TrainingSet data, bool regressor, double targetMean, double targetStd)
        => regressor
            ? tensor(data.Values!.Select(v => (float)((v - targetMean) / targetStd)).ToArray(), [data.Rows, 1]).to(_device)
            : tensor(data.Classes!.Select(c => (long)c).ToArray()).to(_device);

    private static Tensor Loss(Tensor output, Tensor target, bool regressor)
        => regressor ? nn.functional.mse_loss(output, target) : nn.functional.cross_entropy(output, target);

    /// <summary>One scoring pass: the outputs for the metric rows (kept for the final metrics), their loss and metric.</summary>
    private sealed record Evaluation(Tensor Outputs, double Loss, double Metric) : IDisposable
    {
        public void Dispose() => Outputs.Dispose();
    }

    private static Evaluation Evaluate(Func<Tensor, Tensor> forward, HeadNetwork head, Tensor x, Tensor rows, Tensor y, bool regressor, double targetStd,
        int batch, CancellationToken cancellationToken)
    {
        head.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var pieces = new List<Tensor>();
        for (long start = 0; start < rows.shape[0]; start += batch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            pieces.Add(forward(x.index_select(0, rows.narrow(0, start, Math.Min(batch, rows.shape[0] - start)))));
        }
        var output = pieces.Count == 1 ? pieces[0] : cat(pieces, 0);
        var loss = Loss(output, y, regressor).item<float>();
        double metric = regressor
            ? (output - y).abs().mean().item<float>() * targetStd
            : output.argmax(1).eq(y).to(ScalarType.Float32).mean().item<float>();
        return new Evaluation(output.cpu().MoveToOuterDisposeScope(), loss, metric);
    }

    private static HeadMetricsRecord ComputeMetrics(Tensor output, TrainingSet data, int[] metricRows, int[] trainRows,
        bool regressor, double targetMean, double targetStd)
    {
        if (regressor)
        {
            var predicted = output.data<float>().ToArray().Select(p => p * targetStd + targetMean).ToArray();
            var actual = metricRows.Select(i => data.Values![i]).ToArray();
            return RegressionMetrics(predicted, actual, targetMean);
        }
        using var argmax = output.argmax(1);
        var classes = argmax.data<long>().ToArray().Select(c => (int)c).ToArray();
        var truth = metricRows.Select(i => data.Classes![i]).ToArray();
        // Every class tied for the most training rows is a "majority class"; with balanced data that is all of them,
        // and picking one by index would make the baseline an accident of the validation split.
        var counts = trainRows.GroupBy(i => data.Classes![i]).ToDictionary(g => g.Key, g => g.Count());
        var top = counts.Values.Max();
        return ClassificationMetrics(classes, truth, data.Labels, counts.Where(c => c.Value == top).Select(c => c.Key).ToArray());
    }

    /// <summary>MAE, RMSE, R² and the MAE of always predicting the training mean.</summary>
    public static HeadMetricsRecord RegressionMetrics(IReadOnlyList<double> predicted, IReadOnlyList<double> actual, double trainingMean)
    {
        var n = actual.Count;
        double abs = 0, sq = 0, baseline = 0;
        var actualMean = actual.Average();
        double total = 0;
        for (var i = 0; i < n; i++)
        {
            var e = predicted[i] - actual[i];
            abs += Math.Abs(e);
            sq += e * e;
            baseline += Math.Abs(actual[i] - trainingMean);
            total += (actual[i] - actualMean) * (actual[i] - actualMean);
        }
        return new HeadMetricsRecord
        {
            Mae = abs / n,
            Rmse = Math.Sqrt(sq / n),
            R2 = total > 0 ? 1 - sq / total : 0,
            BaselineMae = baseline / n,
        };
    }

    /// <summary>Accuracy, per-class precision and recall, the confusion matrix (row = truth) and the accuracy of
    /// always predicting the training majority class.</summary>
    public static HeadMetricsRecord ClassificationMetrics(IReadOnlyList<int> predicted, IReadOnlyList<int> truth, IReadOnlyList<string> labels, params int[] majorityClasses)
    {
        var k = labels.Count;
        var confusion = new int[k * k];
        for (var i = 0; i < truth.Count; i++)
        {
            confusion[truth[i] * k + predicted[i]]++;
        }
        var perClass = new List<ClassMetricsRecord>(k);
        for (var c = 0; c < k; c++)
        {
            var tp = confusion[c * k + c];
            var support = Enumerable.Range(0, k).Sum(j => confusion[c * k + j]);
            var predictedCount = Enumerable.Range(0, k).Sum(i => confusion[i * k + c]);
            perClass.Add(new ClassMetricsRecord(labels[c], predictedCount > 0 ? (double)tp / predictedCount : 0, support > 0 ? (double)tp / support : 0, support));
        }
        var correct = Enumerable.Range(0, k).Sum(c => confusion[c * k + c]);
        return new HeadMetricsRecord
        {
            Accuracy = truth.Count > 0 ? (double)correct / truth.Count : 0,
            // Expected accuracy of always predicting one training-majority class (averaged over ties).
            BaselineAccuracy = truth.Count > 0 && majorityClasses.Length > 0
                ? majorityClasses.Average(m => (double)truth.Count(t => t == m)) / truth.Count
                : 0,
            PerClass = perClass,
            ConfusionMatrix = confusion,
        };
    }

    private static void DisposeState(Dictionary<string, Tensor>? state)
    {
        if (state is null)
        {
            return;
        }
        foreach (var t in state.Values)
        {
            t.Dispose();
        }
    }
}

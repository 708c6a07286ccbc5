using System.Diagnostics;
using Graft.Heads.Model;
using Graft.Heads.Registry;
using Graft.V1;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Graft.Heads.Training;

/// <summary>Progress after one epoch.</summary>
public sealed record EpochReport(int Epoch, int EpochsTotal, double TrainLoss, double ValidationLoss, string MetricName, double Metric, double ElapsedSeconds);

/// <summary>A trained head ready to publish: its manifest (version not yet assigned) and its weights.</summary>
public sealed record TrainedHead(HeadManifest Manifest, IReadOnlyList<NamedTensor> Weights);

/// <summary>
/// Trains one head from rows in memory: seeded split, feature (and regressor target) standardisation fitted on the
/// training rows, Adam with weight decay, optional early stopping that restores the best epoch, and the validation
/// metrics stored with the version. Same seed and data give the same weights on a host.
/// </summary>
public sealed class HeadTrainer(IOptions<HeadOptions> options)
{
    private readonly Device _device = TorchRuntime.Initialise(options.Value.EffectiveTrainingThreads);

    public TrainedHead Train(TrainingSettings settings, TrainingSet data, IProgress<EpochReport>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var h = settings.Hyperparameters;
        var regressor = settings.Kind == HeadKind.Regressor;
        var d = data.Dimension;

        // Seeded split.
        var order = Enumerable.Range(0, data.Rows).ToArray();
        new Random(unchecked((int)h.Seed ^ (int)(h.Seed >> 32))).Shuffle(order);
        if (!regressor && data.Classes is { } classes)
        {
            // Stratified: reorder so that every prefix holds each class in proportion, and the validation rows (the
            // prefix) mirror the class mix. A plain random split of balanced data leaves the training-majority class
            // short in validation, which makes the majority-class baseline meaningless.
            var perClass = order.GroupBy(i => classes[i]).ToDictionary(g => g.Key, g => g.Count());
            var seen = new Dictionary<int, int>();
            var position = new double[data.Rows];
            foreach (var row in order)
            {
                var k = seen[classes[row]] = seen.GetValueOrDefault(classes[row]) + 1;
                position[row] = (k - 0.5) / perClass[classes[row]];
            }
            order = order.OrderBy(row => position[row]).ToArray(); // stable: ties keep the seeded shuffle
        }
        var validationCount = TrainingSet.ValidationRows(data.Rows, h.ValidationFraction);
        var validationIdx = order[..validationCount];
        var trainIdx = order[validationCount..];
        var metricIdx = validationCount > 0 ? validationIdx : trainIdx;

        var (mean, std) = FitStandardisation(data, trainIdx);
        var xTrainHost = Gather(data, trainIdx, mean, std);
        var xMetricHost = Gather(data, metricIdx, mean, std);

        double targetMean = 0, targetStd = 1;
        if (regressor)
        {
            targetMean = trainIdx.Average(i => data.Values![i]);
            var variance = trainIdx.Average(i => (data.Values![i] - targetMean) * (data.Values[i] - targetMean));
            targetStd = variance > 1e-24 ? Math.Sqrt(variance) : 1;
        }
        var outputs = regressor ? 1 : data.Labels.Count;

        using var xTrain = tensor(xTrainHost, [trainIdx.Length, d]).to(_device);
        using var xMetric = tensor(xMetricHost, [metricIdx.Length, d]).to(_device);
        using var yTrain = Targets(data, trainIdx, regressor, targetMean, targetStd);
        using var yMetric = Targets(data, metricIdx, regressor, targetMean, targetStd);

        HeadNetwork model;
        lock (TorchRuntime.InitialisationLock)
        {
            // libtorch's default generator is global: seed and construct without another job in between.
            manual_seed(h.Seed);
            model = new HeadNetwork(d, h.HiddenSizes, outputs, h.Dropout);
        }
        using var _ = model;
        model.to(_device);
        using var dropoutGenerator = new Generator(unchecked((ulong)h.Seed), _device);
        model.UseDropoutGenerator(dropoutGenerator);
        using var optimizer = optim.Adam(model.parameters(), lr: h.LearningRate, weight_decay: h.WeightDecay);

        var shuffle = new Random(unchecked((int)(h.Seed * 31 + 7)));
        var batchOrder = Enumerable.Range(0, trainIdx.Length).ToArray();
        var best = double.PositiveInfinity;
        var sinceBest = 0;
        Dictionary<string, Tensor>? bestState = null;
        double trainLoss = double.NaN;
        var epochsRun = 0;
        var metricName = (regressor ? "mae" : "accuracy") + (validationCount > 0 ? "" : "_train");
        try
        {
            for (var epoch = 1; epoch <= h.Epochs; epoch++)
            {
                model.train();
                shuffle.Shuffle(batchOrder);
                double lossSum = 0;
                for (var start = 0; start < batchOrder.Length; start += h.BatchSize)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var count = Math.Min(h.BatchSize, batchOrder.Length - start);
                    var index = tensor(batchOrder.AsSpan(start, count).ToArray().Select(i => (long)i).ToArray(), device: _device);
                    var xb = xTrain.index_select(0, index);
                    var yb = yTrain.index_select(0, index);
                    optimizer.zero_grad();
                    var loss = Loss(model.call(xb), yb, regressor);
                    loss.backward();
                    optimizer.step();
                    lossSum += loss.item<float>() * count;
                }
                trainLoss = lossSum / batchOrder.Length;
                epochsRun = epoch;

                var evaluation = Evaluate(model, xMetric, yMetric, regressor, targetStd);
                progress?.Report(new EpochReport(epoch, h.Epochs, trainLoss, evaluation.Loss, metricName, evaluation.Metric, clock.Elapsed.TotalSeconds));
                if (h.Patience > 0)
                {
                    if (evaluation.Loss < best)
                    {
                        best = evaluation.Loss;
                        sinceBest = 0;
                        DisposeState(bestState);
                        bestState = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
                    }
                    else if (++sinceBest >= h.Patience)
                    {
                        break;
                    }
                }
            }
            if (bestState is not null)
            {
                using var noGrad = no_grad();
                foreach (var (name, parameter) in model.named_parameters())
                {
                    parameter.copy_(bestState[name]);
                }
            }
        }
        finally
        {
            DisposeState(bestState);
        }

        var metrics = ComputeMetrics(model, xMetric, data, metricIdx, trainIdx, regressor, targetMean, targetStd);
        var weights = model.named_parameters()
            .Select(p => new NamedTensor(p.name, p.parameter.shape, p.parameter.detach().cpu().data<float>().ToArray()))
            .ToList();
        var finalEvaluation = Evaluate(model, xMetric, yMetric, regressor, targetStd);
        metrics = metrics with
        {
            TrainRows = trainIdx.Length,
            ValidationRows = validationCount,
            EpochsRun = epochsRun,
            TrainingSeconds = clock.Elapsed.TotalSeconds,
            FinalTrainLoss = trainLoss,
            ValidationLoss = finalEvaluation.Loss,
        };
        var manifest = new HeadManifest
        {
            Name = settings.Name,
            Kind = settings.Kind,
            Labels = data.Labels,
            InputDimension = d,
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
        };
        return new TrainedHead(manifest, weights);
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

    private static float[] Gather(TrainingSet data, int[] rows, float[] mean, float[] std)
    {
        var d = data.Dimension;
        var result = new float[rows.Length * d];
        for (var i = 0; i < rows.Length; i++)
        {
            var source = data.Features.AsSpan(rows[i] * d, d);
            var target = result.AsSpan(i * d, d);
            for (var j = 0; j < d; j++)
            {
                target[j] = (source[j] - mean[j]) / std[j];
            }
        }
        return result;
    }

    private Tensor Targets(TrainingSet data, int[] rows, bool regressor, double targetMean, double targetStd)
        => regressor
            ? tensor(rows.Select(i => (float)((data.Values![i] - targetMean) / targetStd)).ToArray(), [rows.Length, 1]).to(_device)
            : tensor(rows.Select(i => (long)data.Classes![i]).ToArray()).to(_device);

    private static Tensor Loss(Tensor output, Tensor target, bool regressor)
        => regressor ? nn.functional.mse_loss(output, target) : nn.functional.cross_entropy(output, target);

    private static (double Loss, double Metric) Evaluate(HeadNetwork model, Tensor x, Tensor y, bool regressor, double targetStd)
    {
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var output = model.call(x);
        var loss = Loss(output, y, regressor).item<float>();
        double metric = regressor
            ? (output - y).abs().mean().item<float>() * targetStd
            : output.argmax(1).eq(y).to(ScalarType.Float32).mean().item<float>();
        return (loss, metric);
    }

    private static HeadMetricsRecord ComputeMetrics(HeadNetwork model, Tensor x, TrainingSet data, int[] metricRows, int[] trainRows,
        bool regressor, double targetMean, double targetStd)
    {
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var output = model.call(x).cpu();
        if (regressor)
        {
            var predicted = output.data<float>().ToArray().Select(p => p * targetStd + targetMean).ToArray();
            var actual = metricRows.Select(i => data.Values![i]).ToArray();
            return RegressionMetrics(predicted, actual, targetMean);
        }
        var classes = output.argmax(1).data<long>().ToArray().Select(c => (int)c).ToArray();
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

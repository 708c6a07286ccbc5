using System.Globalization;
using System.Text;
using Graft.Bench.Speed;

namespace Graft.Bench.Report;

/// <summary>Renders one run's <see cref="Results"/> as bench/RESULTS.md.</summary>
public static class ResultsWriter
{
    public sealed record Goal(string Name, string Target, string Measured, bool? Met);

    public static List<Goal> Goals(Results r)
    {
        var goals = new List<Goal>();
        var predict16 = r.Predict.FirstOrDefault(p => p.Concurrency == 16)?.Stats.Throughput;
        var raw16 = r.RawOrt16Baseline;
        var paired = r.Paired.Count > 0;
        var pairedImages = r.Paired.Sum(p => p.Images);
        double? pRaw = paired ? pairedImages / r.Paired.Sum(p => p.RawOrt16Seconds) : null;
        double? pPredict = paired ? pairedImages / r.Paired.Sum(p => p.Predict16Seconds) : null;
        double? pMl = paired ? pairedImages / r.Paired.Sum(p => p.MlNetSeconds) : null;
        goals.Add(Throughput("Gateway Predict throughput at concurrency 16 vs raw ORT batch 16", "≥ 0.90×", 0.9,
            predict16, raw16, pPredict, pRaw));
        goals.Add(Throughput("Gateway Predict throughput at concurrency 16 vs the ML.NET pipeline", "≥ 1.50×", 1.5,
            predict16, r.MlNet?.ImagesPerSecond, pPredict, pMl));
        goals.Add(Ratio("Predict latency (p50), 10 heads vs 1 head", "≤ 1.10×", r.PredictTenHeads?.P50Ms, r.PredictOneHead?.P50Ms, x => x <= 1.1,
            $"{F(r.PredictTenHeads?.P50Ms)} / {F(r.PredictOneHead?.P50Ms)} ms"));
        goals.Add(r.GraftClassifierAccuracy is { } g && r.MlNetClassifierAccuracy is { } m
            ? new Goal("Classifier head accuracy vs ML.NET LbfgsMaximumEntropy, same features and split", "higher",
                $"{g:P1} vs {m:P1} ({(g - m) * 100:+0.0;-0.0} points)", g > m)
            : new Goal("Classifier head accuracy vs ML.NET LbfgsMaximumEntropy, same features and split", "higher", "pending", null));
        goals.Add(Ratio("Regressor MAE vs the noise floor", "≤ 1.50×", r.GraftRegressorMae, r.NoiseFloorExpectedMae, x => x <= 1.5,
            $"{F(r.GraftRegressorMae, 2)} / {F(r.NoiseFloorExpectedMae, 2)} cm"));

        // Issue 12: the execution layout and the int8 backbone, every ratio against the best raw fp32 layout.
        goals.Add(Ratio("fp32 Predict at concurrency 1, p50 latency vs one raw batch-1 run of the best layout", "≤ 1.30×",
            r.Predict.FirstOrDefault(p => p.Concurrency == 1)?.Stats.P50Ms, r.RawOrtBatch1?.P50Ms, x => x <= 1.3,
            $"{F(r.Predict.FirstOrDefault(p => p.Concurrency == 1)?.Stats.P50Ms)} / {F(r.RawOrtBatch1?.P50Ms)} ms"));
        var i8 = r.Int8;
        goals.Add(Ratio("Raw int8 ORT batch 16 vs the best raw fp32 layout (same layout, interleaved)", "≥ 3.00×", i8?.RawInt8Batch16, i8?.RawFp32Batch16, x => x >= 3,
            $"{F(i8?.RawInt8Batch16)} / {F(i8?.RawFp32Batch16)} img/s"));
        var int8Predict16 = i8?.Predict.FirstOrDefault(p => p.Concurrency == 16)?.Stats.Throughput;
        goals.Add(Ratio("int8 Predict at concurrency 16 vs the best raw fp32 layout", "≥ 2.00×", int8Predict16, raw16, x => x >= 2,
            $"{F(int8Predict16)} / {F(raw16)} img/s"));
        goals.Add(Ratio("int8 Predict at concurrency 16 vs ML.NET's steady-state pipeline", "≥ 2.50×", int8Predict16, r.MlNet?.ImagesPerSecond, x => x >= 2.5,
            $"{F(int8Predict16)} / {F(r.MlNet?.ImagesPerSecond)} img/s"));
        goals.Add(i8 is null || i8.Photos == 0
            ? new Goal("int8 features vs fp32 on held-out photos: mean / worst cosine", "≥ 0.995 / ≥ 0.990", "pending", null)
            : new Goal("int8 features vs fp32 on held-out photos: mean / worst cosine", "≥ 0.995 / ≥ 0.990",
                Inv($"{i8.PhotoCosineMean:F4} / {i8.PhotoCosineWorst:F4} ({i8.Photos} photos; worst {i8.PhotoWorstName})"),
                i8.PhotoCosineMean >= 0.995 && i8.PhotoCosineWorst >= 0.99));
        goals.Add(i8 is null || i8.HeadAccuracyFp32 == 0
            ? new Goal("Classifier head on int8 features vs on fp32 features (same trainer, split)", "within 1 point", "pending", null)
            : new Goal("Classifier head on int8 features vs on fp32 features (same trainer, split)", "within 1 point",
                Inv($"{i8.HeadAccuracyInt8:P1} vs {i8.HeadAccuracyFp32:P1} ({(i8.HeadAccuracyInt8 - i8.HeadAccuracyFp32) * 100:+0.0;-0.0} points)"),
                i8.HeadAccuracyInt8 >= i8.HeadAccuracyFp32 - 0.01));
        return goals;
    }

    // Decided by the paired (interleaved) measurement when there is one: it is the one load drift cannot bias.
    private static Goal Throughput(string name, string target, double threshold, double? value, double? baseline, double? pairedValue, double? pairedBaseline)
    {
        var sequential = value is { } v && baseline is { } b && b > 0 ? v / b : (double?)null;
        var pairedRatio = pairedValue is { } pv && pairedBaseline is { } pb && pb > 0 ? pv / pb : (double?)null;
        var decisive = pairedRatio ?? sequential;
        if (decisive is null) return new Goal(name, target, "pending", null);
        var text = Inv($"sequential rows: {sequential:F2}× ({F(value)} / {F(baseline)} img/s)");
        if (pairedRatio is not null) text = Inv($"**paired rounds: {pairedRatio:F2}×** ({F(pairedValue)} / {F(pairedBaseline)} img/s); ") + text;
        return new Goal(name, target, text, decisive >= threshold);
    }

    private static Goal Ratio(string name, string target, double? value, double? baseline, Func<double, bool> met, string detail) =>
        value is { } v && baseline is { } b && b > 0
            ? new Goal(name, target, $"{v / b:F2}× ({detail})", met(v / b))
            : new Goal(name, target, "pending", null);

    public static string Render(Results r, IReadOnlyCollection<string> plots)
    {
        var md = new StringBuilder();
        var m = r.Machine;
        md.AppendLine("# Graft benchmark results");
        md.AppendLine();
        md.AppendLine($"Written by `bench/run.sh` ({r.Plan} plan) in one run of {r.TotalSeconds / 60:F1} minutes. " +
                      "Every speed row is divided by a baseline measured in this same run, on this machine:");
        md.AppendLine();
        md.AppendLine("| CPU | cores | OS | .NET | date (UTC) | load average (1 min) at start / end | commit |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
        md.AppendLine(Inv($"| {m.Cpu} | {m.Cores} | {m.Os} | {m.Dotnet} | {m.Date:yyyy-MM-dd HH:mm} | {m.LoadAverageStart:F2} / {r.LoadAverageEnd:F2} | {m.Commit} |"));
        md.AppendLine();
        md.AppendLine("The client, the three services and the baselines share these cores; no GPU (ONNX Runtime on CPU).");
        md.AppendLine();
        var load = Math.Max(m.LoadAverageStart, r.LoadAverageEnd);
        if (NotQuiet(load, m.Cores))
        {
            md.AppendLine(Inv($"**This run was not quiet:** the load average reached {load:F1} on {m.Cores} cores, more than the bench's own processes make (other work shared the machine, or at the start a build had just finished). ") +
                          "Every process got only a share of the cores, that share changed from minute to minute, and absolute numbers are far " +
                          "below what this machine gives when idle. Ratios against the baselines are the meaningful numbers, and even they carry " +
                          "the drift between the moment a row and its baseline were measured: the two measurements of the limit below show its size.");
            md.AppendLine();
        }

        md.AppendLine("## Goals");
        md.AppendLine();
        md.AppendLine("| goal | target | measured | |");
        md.AppendLine("| --- | --- | --- | --- |");
        foreach (var g in Goals(r)) md.AppendLine($"| {g.Name} | {g.Target} | {g.Measured} | {(g.Met switch { true => "met", false => "**missed**", null => "pending" })} |");
        md.AppendLine();
        if (r.Pending.Count > 0)
        {
            md.AppendLine("Pending:");
            foreach (var p in r.Pending) md.AppendLine($"- {p}");
            md.AppendLine();
        }

        md.AppendLine("## Speed");
        md.AppendLine();
        if (plots.Contains(Plots.Throughput)) md.AppendLine($"![throughput]({Plots.Throughput})").AppendLine();
        var raw16 = r.RawOrt16Baseline;
        var raw1 = r.RawOrt1Baseline;

        md.AppendLine("### 1. The limit: raw ONNX Runtime in-process");
        md.AppendLine();
        md.AppendLine("ResNet18 from `Microsoft.ML.DnnImageFeaturizer.ResNet18` 0.23.1, batch dimension made symbolic, all graph " +
                      "optimisations, inputs already preprocessed: `session.Run` alone. First a sweep of execution layouts (sessions × " +
                      "intra-op threads, fed in parallel), in interleaved rounds; the best batch-16 throughput is the limit. That layout is " +
                      "then measured twice: before the services start, and again right after the Predict rows (services up, idle). The " +
                      "ratios below divide by the mean of the two.");
        md.AppendLine();
        if (r.RawLayouts.Count > 0)
        {
            md.AppendLine("| layout | batch 16 images / s | × best | batch 1 p50 ms |");
            md.AppendLine("| --- | --- | --- | --- |");
            var best = r.RawLayouts.Max(l => l.Batch16ImagesPerSecond);
            foreach (var l in r.RawLayouts)
            {
                var mark = l.Layout == r.BestRawLayout ? " **(best)**" : "";
                md.AppendLine(Inv($"| {l.Layout.Name}{mark} | {l.Batch16ImagesPerSecond:F1} | {l.Batch16ImagesPerSecond / best:F2} | {l.Batch1P50Ms:F1} |"));
            }
            md.AppendLine();
        }
        md.AppendLine("| batch | when | images / s | ms per run (p50) | × batch 16 baseline |");
        md.AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var (batch, when, s) in new[] { (1, "first", r.RawOrtBatch1), (1, "again", r.RawOrtBatch1Repeat), (16, "first", r.RawOrtBatch16), (16, "again", r.RawOrtBatch16Repeat) })
        {
            if (s is null) continue;
            md.AppendLine(Inv($"| {batch} | {when} | {s.Throughput:F1} | {s.P50Ms:F1} | {s.Throughput / raw16:F2} |"));
        }
        md.AppendLine(Inv($"| 1 | **baseline (mean)** | **{raw1:F1}** | | {raw1 / raw16:F2} |"));
        md.AppendLine(Inv($"| 16 | **baseline (mean)** | **{raw16:F1}** | | 1.00 |"));
        md.AppendLine();
        md.AppendLine(Inv($"Batch-16 and batch-1 features of the same images differ by at most {r.RawOrtBatchMaxDifference:G3}: the symbolic batch changes no result."));
        md.AppendLine();

        if (r.Paired.Count > 0)
        {
            md.AppendLine("#### Paired rounds: the throughput goals measured back to back");
            md.AppendLine();
            md.AppendLine(Inv($"On a shared machine the load drifts between a row and its baseline. Here each round runs raw ORT batch 16, Gateway `Predict` at concurrency 16 (one head, new images) and the ML.NET pipeline one right after the other on {r.Paired[0].Images} images each; the ratios use the sums over all rounds (`bench/run.sh --paired bench`, load average about {r.PairedLoadAverage:F1})."));
            md.AppendLine();
            md.AppendLine("| round | raw ORT b16 img/s | Predict c16 img/s | ML.NET img/s | Predict ÷ raw ORT | Predict ÷ ML.NET | mean backbone batch |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
            for (var i = 0; i < r.Paired.Count; i++)
            {
                var p = r.Paired[i];
                md.AppendLine(Inv($"| {i + 1} | {p.Images / p.RawOrt16Seconds:F1} | {p.Images / p.Predict16Seconds:F1} | {p.Images / p.MlNetSeconds:F1} | {p.RawOrt16Seconds / p.Predict16Seconds:F2} | {p.MlNetSeconds / p.Predict16Seconds:F2} | {p.Predict16MeanBatch:F1} |"));
            }
            var n = r.Paired.Sum(p => p.Images);
            double raw = r.Paired.Sum(p => p.RawOrt16Seconds), pred = r.Paired.Sum(p => p.Predict16Seconds), mlSeconds = r.Paired.Sum(p => p.MlNetSeconds);
            md.AppendLine(Inv($"| **all** | **{n / raw:F1}** | **{n / pred:F1}** | **{n / mlSeconds:F1}** | **{raw / pred:F2}** | **{mlSeconds / pred:F2}** | |"));
            md.AppendLine();
        }

        LevelTable(md, "### 2. BackboneService `Extract` over gRPC",
            "One PNG (28×28 Fashion-MNIST, as a client sends it) per call; every call a new image, so no cache hit; closed loop.", r.Extract, raw16, raw1, r.RawOrt16CpuMsPerImage);
        LevelTable(md, "### 3. Gateway `Predict` end to end",
            "Encoded image in, one classifier head's answer out: Gateway → BackboneService → HeadService, every call a new image.", r.Predict, raw16, raw1, r.RawOrt16CpuMsPerImage);
        if (plots.Contains(Plots.Latency)) md.AppendLine($"![latency]({Plots.Latency})").AppendLine();
        Int8Section(md, r, raw16, raw1);

        md.AppendLine("### 4. Gateway `Predict`: 1 head against 10 heads");
        md.AppendLine();
        if (r.PredictOneHead is { } one && r.PredictTenHeads is { } ten)
        {
            md.AppendLine("Concurrency 1, new image every call, the two cases alternating call by call so load drift hits both alike.");
            md.AppendLine();
            md.AppendLine("| heads | calls | p50 ms | p95 ms | p99 ms | mean ms | p50 × 1 head |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
            md.AppendLine(Inv($"| 1 | {one.Count} | {one.P50Ms:F1} | {one.P95Ms:F1} | {one.P99Ms:F1} | {one.MeanMs:F1} | 1.00 |"));
            md.AppendLine(Inv($"| 10 | {ten.Count} | {ten.P50Ms:F1} | {ten.P95Ms:F1} | {ten.P99Ms:F1} | {ten.MeanMs:F1} | {ten.P50Ms / one.P50Ms:F2} |"));
        }
        else md.AppendLine("pending");
        md.AppendLine();
        if (r.HeadsOnlyOne is { } h1 && r.HeadsOnlyTen is { } h10)
        {
            md.AppendLine("Profile of the difference: HeadService `Predict` alone on one 512-d feature vector (no image, no backbone), " +
                          "1 head against 10 alternating, concurrency 1 (from the `--paired` session):");
            md.AppendLine();
            md.AppendLine("| heads | calls | p50 ms | p95 ms | mean ms |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            md.AppendLine(Inv($"| 1 | {h1.Count} | {h1.P50Ms:F2} | {h1.P95Ms:F2} | {h1.MeanMs:F2} |"));
            md.AppendLine(Inv($"| 10 | {h10.Count} | {h10.P50Ms:F2} | {h10.P95Ms:F2} | {h10.MeanMs:F2} |"));
            md.AppendLine();
        }

        md.Append(RenderFineTunedPredict(r.FineTunedPredict));

        md.AppendLine("### 5. Head training time");
        md.AppendLine();
        if (r.HeadTraining.Count > 0)
        {
            md.AppendLine("HeadService `Train` straight from feature rows (classifier, hidden 256, batch 32, 10 classes, no validation split). " +
                          "512-d is ResNet18's feature size, 25088-d VGG16's pool5. *Training s* is the server's own timing; *wall s* adds the upload. " +
                          "The ratio is against the first row of the same dimension.");
            md.AppendLine();
            md.AppendLine("| features | rows | epochs | training s | wall s | µs per row-epoch | × first row |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
            foreach (var group in r.HeadTraining.GroupBy(t => t.Dimension))
            {
                var first = group.First().TrainingSeconds;
                foreach (var t in group)
                    md.AppendLine(Inv($"| {t.Dimension} | {t.Rows} | {t.Epochs} | {t.TrainingSeconds:F2} | {t.WallSeconds:F2} | {t.TrainingSeconds * 1e6 / (t.Rows * t.Epochs):F0} | {t.TrainingSeconds / first:F2} |"));
            }
            md.AppendLine();
            if (plots.Contains(Plots.HeadTraining)) md.AppendLine($"![head training]({Plots.HeadTraining})").AppendLine();
        }
        else md.AppendLine("pending").AppendLine();

        md.AppendLine("### 6. Retraining on the same images: the feature cache");
        md.AppendLine();
        if (r.Retrain.Count > 0)
        {
            md.AppendLine("Three heads trained one after the other through Gateway `TrainHead` on the same images. Backbone runs are the " +
                          "BackboneService's `graft_backbone_inferences_total` counter (cache hits excluded), read before and after each call.");
            md.AppendLine();
            md.AppendLine("| head | images | backbone runs per image | extraction s | total s | extraction × first |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- |");
            var firstExtract = r.Retrain[0].ExtractSeconds;
            foreach (var t in r.Retrain)
                md.AppendLine(Inv($"| {t.Head} | {t.Images} | {t.BackboneRunsPerImage:F3} | {t.ExtractSeconds:F2} | {t.TotalSeconds:F2} | {t.ExtractSeconds / firstExtract:F2} |"));
        }
        else md.AppendLine("pending");
        md.AppendLine();

        md.AppendLine("### 7. The .NET peer: ML.NET's transfer-learning pipeline");
        md.AppendLine();
        if (r.MlNet is { } ml)
        {
            md.AppendLine("ML.NET 5.0.1, `LoadImages → ResizeImages(224×224) → ExtractPixels → DnnFeaturizeImage(ResNet18)` over the training images " +
                          "as PNG files, the same ONNX Runtime natives (1.31.0), in its own process (bench/MlNetBaseline, SkiaSharp 2.88.9). " +
                          "Steady state: fitted on 4 images, then the whole image set is featurized once untimed (a real warm-up), then timed over the whole set again; the rows are read through `CreateEnumerable` so every image is featurized.");
            md.AppendLine();
            md.AppendLine("| pipeline | images | images / s | × raw ORT batch 1 | × raw ORT batch 16 |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            md.AppendLine(Inv($"| ML.NET | {ml.Images} | {ml.ImagesPerSecond:F1} | {ml.ImagesPerSecond / raw1:F2} | {ml.ImagesPerSecond / raw16:F2} |"));
            foreach (var p in r.Predict)
                md.AppendLine(Inv($"| Graft Gateway Predict, concurrency {p.Concurrency} | {p.Stats.Count} | {p.Stats.Throughput:F1} ({p.Stats.Throughput / ml.ImagesPerSecond:F2}× ML.NET) | {p.Stats.Throughput / raw1:F2} | {p.Stats.Throughput / raw16:F2} |"));
        }
        else md.AppendLine("pending");
        md.AppendLine();

        md.AppendLine("## Transfer quality: Fashion-MNIST");
        md.AppendLine();
        md.AppendLine($"Debian's `dataset-fashion-mnist`. Training: the first {r.TrainImages / 10} images of each class of the training set ({r.TrainImages} images). " +
                      $"Test: the first {r.TestImages} images of the test set. Graft heads are trained through Gateway `TrainHead` on the images " +
                      "(no validation split, so every method trains on the same rows) and tested through Gateway `Predict` on the test images. " +
                      "ML.NET trains on the very features the backbone returned for the same images (fetched with `Extract`).");
        md.AppendLine();
        md.AppendLine("| method | test accuracy | training s |");
        md.AppendLine("| --- | --- | --- |");
        md.AppendLine($"| Graft classifier head (MLP: 512→256→10, dropout 0.2) | {P(r.GraftClassifierAccuracy)} | see §6 |");
        md.AppendLine($"| Graft linear probe (512→10) | {P(r.GraftLinearProbeAccuracy)} | see §6 |");
        md.AppendLine($"| ML.NET LbfgsMaximumEntropy on the same features (mean-variance normalised) | {P(r.MlNetClassifierAccuracy)} | {F(r.MlNetClassifierSeconds, 2)} |");
        md.AppendLine($"| CNN from scratch, TorchSharp, 28×28 pixels ({r.CnnEpochs} epochs) | {P(r.CnnAccuracy)} | {F(r.CnnSeconds, 1)} |");
        md.AppendLine();
        md.AppendLine("**Regression.** As the tutorial faked body lengths, every class has a length distribution (mean, σ in cm: " +
                      string.Join(", ", Data.FashionMnist.Classes.Select(c => Inv($"{c.Name} {c.Mean}±{c.Sd}"))) +
                      ") and every image one draw. The best possible predictor knows each image's class mean; its error is the noise floor.");
        md.AppendLine();
        md.AppendLine("| regressor | test MAE (cm) | × noise floor |");
        md.AppendLine("| --- | --- | --- |");
        md.AppendLine(Inv($"| noise floor: E\\|noise\\| = σ·√(2/π), averaged over the test images | {r.NoiseFloorExpectedMae:F2} | 1.00 |"));
        md.AppendLine(Inv($"| class-mean oracle on these very draws | {r.NoiseFloorOracleMae:F2} | {r.NoiseFloorOracleMae / r.NoiseFloorExpectedMae:F2} |"));
        md.AppendLine($"| Graft regressor head (512→256→1) | {F(r.GraftRegressorMae, 2)} | {F(r.GraftRegressorMae / r.NoiseFloorExpectedMae, 2)} |");
        md.AppendLine($"| ML.NET Sdca on the same features | {F(r.MlNetRegressorMae, 2)} | {F(r.MlNetRegressorMae / r.NoiseFloorExpectedMae, 2)} |");
        md.AppendLine($"| reference: training mean length of the class ML.NET's classifier picked ({P(r.MlNetClassifierAccuracy)} accurate) | {F(r.PredictedClassMeanMae, 2)} | {F(r.PredictedClassMeanMae / r.NoiseFloorExpectedMae, 2)} |");
        md.AppendLine();

        md.AppendLine("### Accuracy as training images per class grow");
        md.AppendLine();
        md.AppendLine("| images per class | Graft classifier head | ML.NET, same features | CNN from scratch | CNN training s |");
        md.AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var p in r.Curve)
            md.AppendLine($"| {p.PerClass} | {P(p.GraftClassifier)} | {P(p.MlNet)} | {P(p.Cnn)} | {F(p.CnnSeconds, 1)} |");
        md.AppendLine();
        if (plots.Contains(Plots.Curve)) md.AppendLine($"![accuracy curve]({Plots.Curve})").AppendLine();

        if (r.FineTune is { } curve) md.Append(RenderFineTune(curve));

        if (r.Notes.Count > 0)
        {
            md.AppendLine("## Notes");
            md.AppendLine();
            foreach (var n in r.Notes) md.AppendLine($"- {n}");
            md.AppendLine();
        }
        return md.ToString();
    }

    /// <summary>The bench keeps every core busy itself (load ≈ cores); only load beyond that is someone else's work.</summary>
    private static bool NotQuiet(double load, int cores) => load > cores + 1;

    /// <summary>Marks the fine-tuning section so <c>--finetune-curve</c> can replace it in a committed RESULTS.md.</summary>
    public const string FineTuneStart = "<!-- finetune-curve: written by bench/run.sh --finetune-curve -->";
    public const string FineTuneEnd = "<!-- /finetune-curve -->";

    /// <summary>Issue 11's depth/accuracy curve (<c>--finetune-curve</c>), as its own section.</summary>
    public static string RenderFineTune(Quality.FineTuneCurveResults c)
    {
        var md = new StringBuilder();
        var depths = Enum.GetValues<Quality.CurveDepth>();
        string Name(Quality.CurveDepth d) => d switch
        {
            Quality.CurveDepth.Probe => "probe (512→10)",
            Quality.CurveDepth.Mlp => "MLP (512→256→10)",
            Quality.CurveDepth.LastBlock => "last-block fine-tuned",
            _ => "last-stage fine-tuned",
        };
        var defaults = Quality.CurveTrainingChoices.ProductDefaults.Describe();
        var sizes = c.Points.Select(p => p.PerClass).Concat(c.Cnn.Select(p => p.PerClass)).Distinct().Order().ToList();
        var views = c.Points.Where(p => p.Views > 0).Select(p => p.Views).DefaultIfEmpty(0).Max();
        md.AppendLine(FineTuneStart);
        md.AppendLine("## Fine-tuning depth and augmentation: Fashion-MNIST (issue 11)");
        md.AppendLine();
        md.AppendLine(Inv($"Same split as above (first N training images per class, first {c.TestImages} test images, the same IDX loader and length draws). **In process**, not over gRPC: BackboneService's own model (`{c.Backbone}`), preprocessing and augmentation (`Imaging/ImageAugmenter.cs`) give the final features and the cut-point activations in one ORT run per batch (cached per split in `bench/out/curve/features`); HeadService's one training loop (`HeadTrainer`) trains every depth and its serving code (`LoadedHead`, one image at a time as `Predict` runs it) scores the test images; `bench/Graft.Bench/Quality/ProductTraining.cs` is the one place that calls them. Probe and MLP: the quality rows' spec (30 epochs, every row trains, seed 42). Fine-tuned depths (tail from the cut point, new linear layer): HeadService's own defaults, what `graft train --depth last-block` gets — {Graft.V1.TrainingDefaults.FineTuneEpochs} epochs on every row, lr {Graft.V1.TrainingDefaults.LearningRate:G3}, tail lr {Graft.V1.TrainingDefaults.TailLearningRate:G3} (last stage {Graft.V1.TrainingDefaults.LastStageTailLearningRate:G3}), weight decay {Graft.V1.TrainingDefaults.WeightDecay:G3}, batch-norm statistics frozen, seed 42 (the choices tried against them are below). Test accuracy on the test images; training seconds are the trainer's own (2 libtorch threads). The CNN from scratch is the quality rows' `ScratchCnn`, run again in the same process. Load average per point is in `results.json` (at the starts and end of the runs: {string.Join(", ", c.LoadAverages.Select(l => l.ToString("F1", CultureInfo.InvariantCulture)))}, on 2 cores; a point's seconds grow with it). Accuracies do not depend on load (seeded, deterministic)."));
        md.AppendLine();

        void AccuracyTable(int viewCount, string title)
        {
            var points = c.Points.Where(p => p.Views == viewCount && p.Choices == defaults).ToList();
            if (points.Count == 0) return;
            var cnnRows = viewCount == 0; // the CNN-only sizes show in the first table, so missing points are visible
            md.AppendLine(title);
            md.AppendLine();
            md.AppendLine("| images per class | CNN from scratch | " + string.Join(" | ", depths.Select(Name)) + " | best depth vs CNN |");
            md.AppendLine("| --- | --- | " + string.Join(" | ", depths.Select(_ => "---")) + " | --- |");
            foreach (var n in sizes)
            {
                var cnn = c.Cnn.FirstOrDefault(p => p.PerClass == n);
                var cells = depths.Select(d => points.FirstOrDefault(p => p.PerClass == n && p.Depth == d)).ToList();
                if (cells.All(x => x is null) && !cnnRows) continue;
                var best = cells.Where(x => x is not null).MaxBy(x => x!.Accuracy);
                var margin = cnn?.Cnn is { } ca && best is not null ? Inv($"{best.Depth}: {(best.Accuracy - ca) * 100:+0.0;-0.0} points") : "–";
                md.AppendLine($"| {n} | {P(cnn?.Cnn)} ({F(cnn?.CnnSeconds, 0)} s) | " +
                    string.Join(" | ", cells.Select(x => x is null ? "–" : Inv($"{x.Accuracy:P1} ({x.TrainingSeconds:F0} s, {x.EpochsRun} ep)"))) + $" | {margin} |");
            }
            md.AppendLine();
        }
        AccuracyTable(0, "### Test accuracy by depth, no augmentation (training seconds, epochs run)");
        if (views > 0) AccuracyTable(views, Inv($"### With augmentation: each training image plus {views} seeded views (flip, random resized crop, ±10°), {views + 1}× the rows"));

        if (views == 0 || c.Points.Count(p => p.Choices == defaults) < sizes.Count * depths.Length * 2)
        {
            md.AppendLine("Cells marked – and tables or sizes not shown were not measured: the run was stopped before the schedule reached them; `bench/run.sh --finetune-curve` resumes from `bench/out/curve/curve.json`.");
            md.AppendLine();
        }

        var tried = c.Points.Where(p => p.Choices != defaults).ToList();
        if (tried.Count > 0)
        {
            md.AppendLine("### Training choices tried against the default recipe");
            md.AppendLine();
            md.AppendLine("| images per class | depth | views | choices | test accuracy | training s | epochs |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
            foreach (var p in c.Points.Where(p => tried.Any(t => t.PerClass == p.PerClass && t.Depth == p.Depth && t.Views == p.Views))
                         .OrderBy(p => p.PerClass).ThenBy(p => p.Depth).ThenBy(p => p.Views).ThenBy(p => p.Choices == defaults ? 1 : 0))
                md.AppendLine(Inv($"| {p.PerClass} | {Name(p.Depth)} | {p.Views} | {p.Choices} | {p.Accuracy:P1} | {p.TrainingSeconds:F0} | {p.EpochsRun} |"));
            md.AppendLine();
        }

        if (c.Regressors.Count > 0)
        {
            md.AppendLine(Inv($"### Length regressor at 100 images per class (noise floor {c.NoiseFloorMae:F2} cm)"));
            md.AppendLine();
            md.AppendLine("| depth | views | test MAE (cm) | × noise floor | training s |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            foreach (var g in c.Regressors.OrderBy(g => g.Depth).ThenBy(g => g.Views))
                md.AppendLine(Inv($"| {Name(g.Depth).Replace("→10", "→1")} | {g.Views} | {g.Mae:F2} | {g.Mae / c.NoiseFloorMae:F2} | {g.TrainingSeconds:F1} |"));
            md.AppendLine();
        }

        md.AppendLine("**Goals (issue 11)**");
        md.AppendLine();
        md.AppendLine("| goal | measured | |");
        md.AppendLine("| --- | --- | --- |");
        var beats = sizes.Select(n =>
        {
            var best = c.Points.Where(p => p.PerClass == n).MaxBy(p => p.Accuracy);
            var cnn = c.Cnn.FirstOrDefault(p => p.PerClass == n)?.Cnn;
            return (n, best, cnn);
        }).Where(x => x.best is not null && x.cnn is not null).ToList();
        if (beats.Count > 0)
        {
            var all = beats.All(x => x.best!.Accuracy > x.cnn);
            md.AppendLine(Inv($"| best depth beats the CNN from scratch at every N | {string.Join("; ", beats.Select(x => $"{x.n}: {x.best!.Accuracy:P1} ({x.best.Depth}{(x.best.Views > 0 ? $", {x.best.Views} views" : "")}) vs {x.cnn:P1}"))} | {(all && beats.Count == sizes.Count ? "met" : all ? "met where measured" : "**missed**")} |"));
        }
        if (c.Points.Where(p => p.PerClass == 100).MaxBy(p => p.Accuracy) is { } top)
            md.AppendLine(Inv($"| ≥ 88 % at 100 images per class | {top.Accuracy:P1} ({top.Depth}, {top.Views} views, {top.Choices}) | {(top.Accuracy >= 0.88 ? "met" : $"**missed** by {(0.88 - top.Accuracy) * 100:F1} points")} |"));
        if (c.Regressors.Where(g => g.PerClass == 100).MinBy(g => g.Mae) is { } reg)
            md.AppendLine(Inv($"| regressor MAE ≤ 6.0 cm at 100 images per class | {reg.Mae:F2} cm ({reg.Depth}, {reg.Views} views) | {(reg.Mae <= 6.0 ? "met" : $"**missed** by {reg.Mae - 6.0:F2} cm")} |"));
        md.AppendLine();
        if (c.Extractions.Count > 0)
        {
            md.AppendLine("Extraction (final features + both cut points, one ORT run per batch of 16): " + string.Join("; ", c.Extractions) + ".");
            md.AppendLine();
        }
        md.AppendLine(FineTuneEnd);
        md.AppendLine();
        return md.ToString();
    }

    /// <summary>Puts the fine-tuning section into an existing RESULTS.md (replacing an earlier one) and leaves the rest as it is.</summary>
    public static string SpliceFineTune(string existing, Quality.FineTuneCurveResults curve) =>
        Splice(existing, FineTuneStart, FineTuneEnd, RenderFineTune(curve), "\n## Notes");

    /// <summary>Puts section 4b into an existing RESULTS.md (replacing an earlier one, else before section 5) and leaves
    /// the rest as it is.</summary>
    public static string SpliceFineTunedPredict(string existing, FineTunedPredictResults row) =>
        Splice(existing, FineTunedPredictStart, FineTunedPredictEnd, RenderFineTunedPredict(row), "\n### 5. ", "\n## Notes");

    /// <summary>Replaces the text from <paramref name="startMarker"/> to <paramref name="endMarker"/> with
    /// <paramref name="section"/>; without the markers, inserts it before the first of <paramref name="before"/> found
    /// (headings, each starting with its line break), else at the end.</summary>
    private static string Splice(string existing, string startMarker, string endMarker, string section, params string[] before)
    {
        var start = existing.IndexOf(startMarker, StringComparison.Ordinal);
        if (start >= 0)
        {
            var end = existing.IndexOf(endMarker, start, StringComparison.Ordinal);
            var after = end < 0 ? existing.Length : end + endMarker.Length;
            while (after < existing.Length && existing[after] is '\n' or '\r') after++;
            return existing[..start] + section + existing[after..];
        }
        foreach (var heading in before)
        {
            var at = existing.IndexOf(heading, StringComparison.Ordinal);
            if (at >= 0) return existing[..(at + 1)] + section + existing[(at + 1)..];
        }
        return existing.TrimEnd() + "\n\n" + section;
    }

    /// <summary>Marks section 4b so <c>--finetune-latency</c> can replace it in a committed RESULTS.md.</summary>
    public const string FineTunedPredictStart = "<!-- finetune-latency: written by bench/run.sh (full run) or bench/run.sh --finetune-latency -->";
    public const string FineTunedPredictEnd = "<!-- /finetune-latency -->";

    /// <summary>Section 4b: issue 11's Predict of a fine-tuned head against a frozen one, between its markers.</summary>
    public static string RenderFineTunedPredict(FineTunedPredictResults? f)
    {
        var md = new StringBuilder();
        md.AppendLine(FineTunedPredictStart);
        md.AppendLine("### 4b. Gateway `Predict`: a fine-tuned head against a frozen one (issue 11)");
        md.AppendLine();
        if (f is null)
        {
            md.AppendLine("pending: `bench/run.sh --finetune-latency` measures this row alone and adds it here.");
            md.AppendLine();
            md.AppendLine(FineTunedPredictEnd);
            md.AppendLine();
            return md.ToString();
        }
        var m = f.Machine;
        var frozenTraining = f.Training.FirstOrDefault(t => t.Depth == Graft.V1.HeadDepths.Mlp);
        var tunedTraining = f.Training.FirstOrDefault(t => t.Depth != Graft.V1.HeadDepths.Mlp);
        var c1 = f.Levels.FirstOrDefault(l => l.Concurrency == 1)?.Stats.Count / Math.Max(1, f.Rounds);
        var c16 = f.Levels.FirstOrDefault(l => l.Concurrency == 16)?.Stats.Count / Math.Max(1, f.Rounds);
        md.AppendLine(Inv($"Measured on {m.Date:yyyy-MM-dd HH:mm} UTC at commit {m.Commit} ({f.Plan} plan, {m.Cores} cores, load average {m.LoadAverageStart:F2} at start / {f.LoadAverageEnd:F2} at end), {(f.Alone ? "by `bench/run.sh --finetune-latency` on its own stack" : "as part of the full run")}, in {f.Seconds / 60:F1} minutes. ") +
            Inv($"Two classifier heads trained through Gateway `TrainHead` on the same {f.Training.FirstOrDefault()?.Run.Images} Fashion-MNIST images (the first {f.PerClass} per class): ") +
            Inv($"`{frozenTraining?.Run.Head}` (depth `mlp`: hidden 256 on the frozen final features, {Epochs(frozenTraining?.Epochs)}) and `{tunedTraining?.Run.Head}` (depth `{tunedTraining?.Depth}`: the backbone's tail from cut point `{f.CutPoint}`, retrained from its {f.TailParameters:N0} pretrained weights, plus a linear layer, {Epochs(tunedTraining?.Epochs)}). ") +
            "Few epochs and no validation split: accuracy is not the point of this row, the serving path is. " +
            Inv($"Then {f.Rounds} interleaved rounds, each running the three cases back to back (their order rotating from round to round) at concurrency 1 ({c1} calls each) and at 16 ({c16} calls each), every call a new image (so no cache hit), so that load drift hits the three cases alike; percentiles pooled over the rounds. ") +
            "*Backbone images per Predict* is the BackboneService's `graft_backbone_inferences_total` (images run through the model) over the calls of the case that missed the feature cache: 1 means one backbone run per image, whatever the heads.");
        md.AppendLine();
        var load = Math.Max(m.LoadAverageStart, f.LoadAverageEnd);
        if (NotQuiet(load, m.Cores))
        {
            md.AppendLine(Inv($"**Not a quiet run:** the load average reached {load:F1} on {m.Cores} cores; absolute times are inflated, the ratios within the rounds are the meaningful numbers."));
            md.AppendLine();
        }
        var names = f.Levels.SelectMany(l => l.CpuMsPerImage.Keys).Distinct().ToList();
        md.AppendLine("| heads | concurrency | calls | images / s | × frozen images / s | p50 ms | p95 ms | p99 ms | p50 × frozen | backbone images per Predict | mean backbone batch | " +
            string.Join(" | ", names.Select(n => $"{n} CPU ms / image")) + " |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | " + string.Join(" | ", names.Select(_ => "---")) + " |");
        foreach (var l in f.Levels.OrderBy(l => l.Concurrency))
        {
            var frozen = f.Level("frozen", l.Concurrency)?.Stats;
            var s = l.Stats;
            md.AppendLine(Inv($"| {l.Case} (`{string.Join("`, `", l.Heads)}`) | {l.Concurrency} | {s.Count} | {s.Throughput:F1} | {s.Throughput / frozen?.Throughput:F2} | {s.P50Ms:F1} | {s.P95Ms:F1} | {s.P99Ms:F1} | {s.P50Ms / frozen?.P50Ms:F2} | {l.BackboneImagesPerPredict:F3} | {l.MeanBackboneBatch:F1} | ") +
                string.Join(" | ", names.Select(n => l.CpuMsPerImage.GetValueOrDefault(n).ToString("F1", CultureInfo.InvariantCulture))) + " |");
        }
        md.AppendLine();
        md.AppendLine(Inv($"Bytes on the wire per image: the backbone's `ExtractReply` is {f.ExtractReplyBytes:N0} bytes with the final features alone and {f.ExtractReplyWithCutBytes:N0} bytes with the `{f.CutPoint}` activations ([{string.Join(", ", f.CutShape)}] packed float32, {f.CutFeaturesBytes:N0} bytes as protobuf); a Predict naming a fine-tuned head carries them over two sockets (BackboneService → Gateway, Gateway → HeadService in `HeadPredictRequest.cut_features`)."));
        md.AppendLine();
        if (f.Training.Count > 0)
        {
            md.AppendLine("| head | depth | epochs | images | backbone runs per image | extraction s | training s (server) | total s |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
            foreach (var t in f.Training)
                md.AppendLine(Inv($"| `{t.Run.Head}` | {t.Depth} | {t.Epochs} | {t.Run.Images} | {t.Run.BackboneRunsPerImage:F3} | {t.Run.ExtractSeconds:F1} | {t.TrainingSeconds:F1} | {t.Run.TotalSeconds:F1} |"));
            md.AppendLine();
        }
        md.AppendLine("**Goals (issue 11)**");
        md.AppendLine();
        md.AppendLine("| goal | target | measured | |");
        md.AppendLine("| --- | --- | --- | --- |");
        foreach (var g in f.Goals()) md.AppendLine($"| {g.Name} | {g.Target} | {g.Measured} | {(g.Met ? "met" : "**missed**")} |");
        md.AppendLine();
        md.AppendLine(FineTunedPredictEnd);
        md.AppendLine();
        return md.ToString();

        static string Epochs(int? n) => n == 1 ? "1 epoch" : $"{n} epochs";
    }

    private static void LevelTable(StringBuilder md, string title, string intro, List<LevelResult> levels, double? raw16, double? raw1, double rawCpu)
    {
        md.AppendLine(title);
        md.AppendLine();
        if (levels.Count == 0)
        {
            md.AppendLine("pending").AppendLine();
            return;
        }
        md.AppendLine(intro);
        md.AppendLine();
        md.AppendLine("| concurrency | calls | images / s | × raw ORT batch 16 | × raw ORT batch 1 | p50 ms | p95 ms | p99 ms | cache hits | mean backbone batch |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var l in levels)
        {
            var s = l.Stats;
            md.AppendLine(Inv($"| {l.Concurrency} | {s.Count} | {s.Throughput:F1} | {s.Throughput / raw16:F2} | {s.Throughput / raw1:F2} | {s.P50Ms:F1} | {s.P95Ms:F1} | {s.P99Ms:F1} | {l.CacheHits} | {l.MeanBatchSize:F1} |"));
        }
        md.AppendLine();
        var names = levels.SelectMany(l => l.CpuMsPerImage.Keys).Distinct().ToList();
        if (names.Count > 0)
        {
            md.AppendLine("CPU time per image by process (ms; user + system, from /proc), against the raw ORT batch-16 run's own CPU per image:");
            md.AppendLine();
            md.AppendLine($"| concurrency | {string.Join(" | ", names)} | total | × raw ORT batch 16 CPU |");
            md.AppendLine($"| --- | {string.Join(" | ", names.Select(_ => "---"))} | --- | --- |");
            foreach (var l in levels)
            {
                var total = l.CpuMsPerImage.Values.Sum();
                md.AppendLine(Inv($"| {l.Concurrency} | {string.Join(" | ", names.Select(n => l.CpuMsPerImage.GetValueOrDefault(n).ToString("F1", CultureInfo.InvariantCulture)))} | {total:F1} | {total / rawCpu:F2} |"));
            }
            md.AppendLine();
        }
        if (levels.Any(l => l.StageMs.Count > 0 || l.ThreadCpuMsPerImage.Count > 0))
        {
            md.AppendLine("Where the time goes: the backbone's stage histograms (mean ms; preprocess and queue per image, run per batch) and " +
                "CPU ms per image by thread (`graft-batch` calls `session.Run`, `dotnet` = ONNX Runtime's intra-op threads, " +
                "`.NET TP Worker` = gRPC, decode and preprocessing, `.NET Tiered Com` = the JIT; top 3 per process):");
            md.AppendLine();
            md.AppendLine("| concurrency | preprocess | queue | run | BackboneService threads | HeadService threads | Gateway threads |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- |");
            string Top(LevelResult l, string process) => l.ThreadCpuMsPerImage.GetValueOrDefault(process) is { } t
                ? string.Join(", ", t.OrderByDescending(p => p.Value).Take(3).Select(p => Inv($"{p.Key} {p.Value:F1}")))
                : "";
            string Stage(LevelResult l, string stage) => l.StageMs.GetValueOrDefault(stage, double.NaN) is var v && double.IsFinite(v) ? Inv($"{v:F2}") : "";
            foreach (var l in levels)
            {
                md.AppendLine($"| {l.Concurrency} | {Stage(l, "preprocess")} | {Stage(l, "queue")} | {Stage(l, "run")} | {Top(l, "BackboneService")} | {Top(l, "HeadService")} | {Top(l, "Gateway")} |");
            }
            md.AppendLine();
        }
    }

    private static void Int8Section(StringBuilder md, Results r, double? raw16, double? raw1)
    {
        md.AppendLine("### 3b. The int8 backbone (`resnet18-int8`)");
        md.AppendLine();
        if (r.Int8 is not { } i8)
        {
            md.AppendLine("pending (run without `--no-int8`)").AppendLine();
            return;
        }
        md.AppendLine(Inv($"Quantized by Graft's own quantizer (`services/BackboneService/Quantization`) in {i8.QuantizeSeconds:F1} s: {i8.Report}."));
        md.AppendLine();
        md.AppendLine("| raw ONNX Runtime, best fp32 layout, interleaved rounds | images / s | × raw fp32 batch 16 (same rounds) | × baseline |");
        md.AppendLine("| --- | --- | --- | --- |");
        md.AppendLine(Inv($"| fp32 batch 16 | {i8.RawFp32Batch16:F1} | 1.00 | {i8.RawFp32Batch16 / raw16:F2} |"));
        md.AppendLine(Inv($"| int8 batch 16 | {i8.RawInt8Batch16:F1} | {i8.RawInt8Batch16 / i8.RawFp32Batch16:F2} | {i8.RawInt8Batch16 / raw16:F2} |"));
        if (i8.RawInt8Batch1 is { } b1)
            md.AppendLine(Inv($"| int8 batch 1 (p50 {b1.P50Ms:F1} ms) | {b1.Throughput:F1} | {b1.Throughput / i8.RawFp32Batch16:F2} | {b1.Throughput / raw16:F2} |"));
        md.AppendLine();
        md.AppendLine("Accuracy against fp32 features of the same inputs:");
        md.AppendLine();
        md.AppendLine("| inputs | count | mean cosine | worst cosine |");
        md.AppendLine("| --- | --- | --- | --- |");
        md.AppendLine(Inv($"| held-out photos (`samples/photos/held-out`, never calibrated on) | {i8.Photos} | {i8.PhotoCosineMean:F4} | {i8.PhotoCosineWorst:F4} ({i8.PhotoWorstName}) |"));
        md.AppendLine(Inv($"| Fashion-MNIST test images | {i8.FashionImages} | {i8.FashionCosineMean:F4} | {i8.FashionCosineWorst:F4} |"));
        md.AppendLine();
        md.AppendLine("| heads (ML.NET LbfgsMaximumEntropy / SDCA, same split) | classifier accuracy | regressor MAE (cm) |");
        md.AppendLine("| --- | --- | --- |");
        md.AppendLine(Inv($"| on fp32 features | {i8.HeadAccuracyFp32:P1} | {i8.HeadMaeFp32:F2} |"));
        md.AppendLine(Inv($"| on int8 features | {i8.HeadAccuracyInt8:P1} | {i8.HeadMaeInt8:F2} |"));
        md.AppendLine();
        if (i8.ServiceFingerprint.Length > 0) md.AppendLine($"Services on `Graft__Backbone__Profile=resnet18-int8` (fingerprint `{i8.ServiceFingerprint}`, layout {i8.ServiceLayout}):").AppendLine();
        LevelTable(md, "#### int8 `Extract` over gRPC", "As section 2, on the int8 backbone; ratios against the fp32 limit.", i8.Extract, raw16, raw1, r.RawOrt16CpuMsPerImage);
        LevelTable(md, "#### int8 Gateway `Predict` end to end", "As section 3, on the int8 backbone with a head trained on int8 features.", i8.Predict, raw16, raw1, r.RawOrt16CpuMsPerImage);
    }

    private static string F(double? value, int decimals = 1) =>
        value is { } v && !double.IsNaN(v) ? v.ToString("F" + decimals, CultureInfo.InvariantCulture) : "pending";

    private static string P(double? value) =>
        value is { } v ? (v * 100).ToString("F1", CultureInfo.InvariantCulture) + " %" : "pending";

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

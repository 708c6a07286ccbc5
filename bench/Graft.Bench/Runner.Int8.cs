using System.Diagnostics;
using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Quantization;
using Graft.Bench.Data;
using Graft.Bench.Hosting;
using Graft.Bench.Onnx;
using Graft.Bench.Shared;
using Graft.Bench.Speed;
using Graft.V1;
using Onnx;
using FeatureRow = Graft.Bench.Shared.FeatureRow;

namespace Graft.Bench;

/// <summary>The int8 backbone (issue 12): raw int8 against raw fp32 in the best layout, accuracy against fp32, and the
/// services on the <c>resnet18-int8</c> profile.</summary>
public sealed partial class Runner
{
    public async Task RunInt8Async(Results results, IReadOnlyList<FashionImage> trainSet, double[] trainLengths, double[] testLengths)
    {
        log("int8: quantizing the cut ResNet18 with the service's quantizer (default settings and calibration set)");
        var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var fp32Model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(profile.ModelPath));
        GraphCutter.Cut(fp32Model, profile.CutTensor);
        var settings = BackboneProfiles.ResNet18Int8().Quantization!;
        var calibration = QuantizedModelStore.CalibrationFiles(Path.Combine(AppContext.BaseDirectory, "calibration"), settings.CalibrationImages);
        var timer = Stopwatch.StartNew();
        var (int8Model, report) = Int8Quantizer.Quantize(fp32Model, profile.InputName!, [3, 224, 224],
            calibration.Select(f => preprocessor.Preprocess(File.ReadAllBytes(f))).ToList(), settings);
        var int8 = new Int8Results { Report = report.ToString(), QuantizeSeconds = timer.Elapsed.TotalSeconds, CalibrationImages = calibration.Count };
        results.Int8 = int8;
        var int8Bytes = int8Model.ToByteArray();
        log($"  {report} in {int8.QuantizeSeconds:F1} s");

        // Raw: int8 and fp32 in the best fp32 layout, interleaved so load drift hits both alike.
        var layout = results.BestRawLayout ?? new RawLayout(1, Environment.ProcessorCount, false);
        var fp32Sessions = OpenLayout(layout);
        var int8Sessions = OpenLayout(layout, int8Bytes);
        try
        {
            var pool = FreshImages(16);
            var rounds = Math.Max(1, plan.SweepRounds);
            (int Images, double Seconds) f16 = (0, 0), i16 = (0, 0);
            var i1 = new List<double>();
            for (var r = 0; r < rounds; r++)
            {
                var f = RawLayoutSweep.Batch16(fp32Sessions, pool, plan.RawOrtImages / rounds);
                var q = RawLayoutSweep.Batch16(int8Sessions, pool, plan.RawOrtImages / rounds);
                (f16, i16) = ((f16.Images + f.Images, f16.Seconds + f.Seconds), (i16.Images + q.Images, i16.Seconds + q.Seconds));
                i1.AddRange(RawLayoutSweep.Batch1(int8Sessions[0], pool, Math.Max(3, plan.RawOrtImages / rounds / 2)));
            }
            int8.RawFp32Batch16 = f16.Images / f16.Seconds;
            int8.RawInt8Batch16 = i16.Images / i16.Seconds;
            int8.RawInt8Batch1 = LatencyStats.From(i1, i1.Sum() / 1000, i1.Count);
            log($"  raw in layout {layout.Name}: fp32 b16 {int8.RawFp32Batch16:F1}, int8 b16 {int8.RawInt8Batch16:F1} img/s ({int8.RawInt8Batch16 / int8.RawFp32Batch16:F2}x), int8 b1 p50 {int8.RawInt8Batch1.P50Ms:F1} ms");

            // Accuracy: cosine to fp32 on held-out photos (never calibrated on) and on Fashion-MNIST test images.
            double Cosine(float[] a, float[] b)
            {
                double dot = 0, na = 0, nb = 0;
                for (var k = 0; k < a.Length; k++) { dot += a[k] * b[k]; na += a[k] * a[k]; nb += b[k] * b[k]; }
                return dot / Math.Sqrt(na * nb);
            }
            var photos = Directory.GetFiles(Path.Combine(repoRoot, "samples", "photos", "held-out")).Order().ToList();
            var photoCos = photos.Select(p =>
            {
                var x = preprocessor.Preprocess(File.ReadAllBytes(p));
                return Cosine(fp32Sessions[0].Run(x, 1), int8Sessions[0].Run(x, 1));
            }).ToList();
            int8.PhotoCosineMean = photoCos.Average();
            int8.PhotoCosineWorst = photoCos.Min();
            int8.PhotoWorstName = Path.GetFileName(photos[photoCos.IndexOf(photoCos.Min())]);
            int8.Photos = photos.Count;

            var trainFp32 = LocalFeatures(fp32Sessions[0], trainSet, trainLengths);
            var trainInt8 = LocalFeatures(int8Sessions[0], trainSet, trainLengths);
            var testFp32 = LocalFeatures(fp32Sessions[0], _test, testLengths);
            var testInt8 = LocalFeatures(int8Sessions[0], _test, testLengths);
            var fashionCos = testFp32.Select((row, k) => Cosine(row.Features, testInt8[k].Features)).ToList();
            int8.FashionCosineMean = fashionCos.Average();
            int8.FashionCosineWorst = fashionCos.Min();
            int8.FashionImages = fashionCos.Count;
            log($"  cosine int8 vs fp32: photos mean {int8.PhotoCosineMean:F4} worst {int8.PhotoCosineWorst:F4} ({int8.PhotoWorstName}); " +
                $"Fashion-MNIST mean {int8.FashionCosineMean:F4} worst {int8.FashionCosineWorst:F4}");

            // Heads: the same ML.NET trainers on fp32 and on int8 features of the same images.
            foreach (var (name, train, test) in new[] { ("fp32", trainFp32, testFp32), ("int8", trainInt8, testInt8) })
            {
                var trainPath = Path.Combine(_work, $"features-{name}-local-train.bin");
                var testPath = Path.Combine(_work, $"features-{name}-local-test.bin");
                FeatureFile.Write(trainPath, train);
                FeatureFile.Write(testPath, test);
                var ml = MlNet.RunTrainers(trainPath, testPath);
                if (name == "fp32") (int8.HeadAccuracyFp32, int8.HeadMaeFp32) = (ml.ClassifierAccuracy, ml.RegressorMae);
                else (int8.HeadAccuracyInt8, int8.HeadMaeInt8) = (ml.ClassifierAccuracy, ml.RegressorMae);
            }
            log($"  heads: accuracy fp32 {int8.HeadAccuracyFp32:P1} int8 {int8.HeadAccuracyInt8:P1}; MAE fp32 {int8.HeadMaeFp32:F2} int8 {int8.HeadMaeInt8:F2}");
        }
        finally
        {
            foreach (var s in fp32Sessions.Concat(int8Sessions)) s.Dispose();
        }

        if (!withServices) return;
        log("int8: services on the resnet18-int8 profile");
        var cache = Path.Combine(_work, "quantized");
        await using var stack = await GraftStack.StartAsync(repoRoot, _work, TimeSpan.FromMinutes(5),
            "--Graft:Backbone:Profile=resnet18-int8", $"--Graft:Backbone:QuantizedCacheDirectory={cache}");
        var calls = new GraftCalls(stack);
        var describe = await stack.Backbone.DescribeAsync(new DescribeBackboneRequest());
        int8.ServiceFingerprint = describe.Fingerprint;
        int8.ServiceLayout = $"{describe.Sessions} x {describe.IntraOpThreads} on {describe.Cores} cores";
        await WarmUpAsync(stack, calls.ExtractAsync);
        foreach (var c in plan.Concurrency)
        {
            var images = FreshImages(plan.RequestsPerLevel);
            var level = await MeasureLevelAsync(stack, c, images.Count, async i => (await calls.ExtractAsync(images[i])).CacheHit);
            int8.Extract.Add(level);
            log($"  int8 extract c{c}: {level.Stats.Throughput:F1} img/s p50 {level.Stats.P50Ms:F0} ms, mean batch {level.MeanBatchSize:F1}");
        }
        // A head on int8 features to predict with (fp32 heads would be stale on this fingerprint).
        var seed = FashionMnist.FirstPerClass(_train, 10);
        var rows = (await ExtractRowsAsync(calls, seed, null))
            .Select(r => { var row = new V1.FeatureRow { Label = FashionMnist.Classes[r.Label].Name }; row.Features.AddRange(r.Features); return row; }).ToList();
        var spec = Spec("int8-head", HeadKind.Classifier, hidden: null, epochs: 5);
        spec.BackboneFingerprint = describe.Fingerprint;
        await calls.TrainOnFeaturesAsync(spec, rows);
        string[] heads = ["int8-head"];
        await WarmUpAsync(stack, image => calls.PredictAsync(image, heads));
        foreach (var c in plan.Concurrency)
        {
            var images = FreshImages(plan.RequestsPerLevel);
            var level = await MeasureLevelAsync(stack, c, images.Count, async i => (await calls.PredictAsync(images[i], heads)).CacheHit);
            int8.Predict.Add(level);
            log($"  int8 predict c{c}: {level.Stats.Throughput:F1} img/s p50 {level.Stats.P50Ms:F0} ms, mean batch {level.MeanBatchSize:F1}");
        }
    }
}

/// <summary>The int8 rows of one run.</summary>
public sealed class Int8Results
{
    public string Report { get; set; } = "";
    public double QuantizeSeconds { get; set; }
    public int CalibrationImages { get; set; }
    public double RawFp32Batch16 { get; set; }
    public double RawInt8Batch16 { get; set; }
    public LatencyStats? RawInt8Batch1 { get; set; }
    public int Photos { get; set; }
    public double PhotoCosineMean { get; set; }
    public double PhotoCosineWorst { get; set; }
    public string PhotoWorstName { get; set; } = "";
    public int FashionImages { get; set; }
    public double FashionCosineMean { get; set; }
    public double FashionCosineWorst { get; set; }
    public double HeadAccuracyFp32 { get; set; }
    public double HeadAccuracyInt8 { get; set; }
    public double HeadMaeFp32 { get; set; }
    public double HeadMaeInt8 { get; set; }
    public string ServiceFingerprint { get; set; } = "";
    public string ServiceLayout { get; set; } = "";
    public List<LevelResult> Extract { get; } = [];
    public List<LevelResult> Predict { get; } = [];
}

using System.Diagnostics;
using Graft.Bench.Data;
using Graft.Bench.Hosting;
using Graft.Bench.Onnx;
using Graft.Bench.Peers;
using Graft.Bench.Quality;
using Graft.Bench.Shared;
using Graft.Bench.Speed;
using Graft.V1;
using FeatureRow = Graft.Bench.Shared.FeatureRow;

namespace Graft.Bench;

/// <summary>Runs every benchmark of issue 6 in one process, in an order that keeps measurements apart.</summary>
public sealed partial class Runner(BenchPlan plan, string repoRoot, string outDirectory, bool withServices, Action<string> log, bool withInt8 = true)
{
    private const int LengthSeed = 20261128;
    private const string MlpHead = "fashion-mlp";
    private const string ProbeHead = "fashion-probe";
    private const string RegressorHead = "fashion-length";

    private readonly string _work = Path.Combine(outDirectory, "work");
    private IReadOnlyList<FashionImage> _train = [];
    private IReadOnlyList<FashionImage> _test = [];
    private int _speedCursor = 10_000; // train images from here on are used once each by the speed runs

    /// <summary>
    /// The paired measurement alone, added to an earlier run's results: rounds of raw ORT batch 16, Gateway Predict at
    /// concurrency 16 and the ML.NET pipeline back to back, so that load drift on a shared machine hits all three alike.
    /// </summary>
    public async Task RunPairedAsync(Results results, int rounds, int imagesPerRound)
    {
        Directory.CreateDirectory(_work);
        _train = FashionMnist.Load("train");
        _speedCursor = 40_000; // beyond anything the main run used
        var loadStart = MachineInfoReader.LoadAverage();
        await using var stack = await GraftStack.StartAsync(repoRoot, _work, TimeSpan.FromMinutes(3));
        var calls = new GraftCalls(stack);
        // A head to predict with: trained straight on features of 100 images.
        var seed = FashionMnist.FirstPerClass(_train, 10);
        var rows = (await ExtractRowsAsync(calls, seed, null))
            .Select(r => { var row = new V1.FeatureRow { Label = FashionMnist.Classes[r.Label].Name }; row.Features.AddRange(r.Features); return row; }).ToList();
        var spec = Spec("paired-head", HeadKind.Classifier, hidden: null, epochs: 5);
        spec.BackboneFingerprint = (await calls.ExtractAsync(seed[0])).Fingerprint;
        await calls.TrainOnFeaturesAsync(spec, rows);
        string[] heads = ["paired-head"];
        await ProfileHeadCostAsync(results, stack, spec, rows);
        var layout = results.BestRawLayout ?? new RawLayout(1, Environment.ProcessorCount, false);
        var sessions = OpenLayout(layout);
        // Warm-up: one untimed round at the measured concurrency, so no round pays for JIT tiering or pool growth.
        var warmUp = FreshImages(imagesPerRound);
        await MeasureLevelAsync(stack, 16, warmUp.Count, async i => (await calls.PredictAsync(warmUp[i], heads)).CacheHit);
        var pool = FreshImages(16);
        RawLayoutSweep.Batch16(sessions, pool, 16);
        results.Paired.Clear();
        for (var round = 0; round < rounds; round++)
        {
            var (rawCount, rawSeconds) = RawLayoutSweep.Batch16(sessions, pool, imagesPerRound);
            var raw = new LatencyStats(rawCount, rawSeconds, 0, 0, 0, 0);
            var images = FreshImages(imagesPerRound);
            var level = await MeasureLevelAsync(stack, 16, images.Count, async i => (await calls.PredictAsync(images[i], heads)).CacheHit);
            var mlImages = FreshImages(imagesPerRound);
            var ml = MlNet.RunPipeline(mlImages, mlImages.Select(_ => 0.0).ToList());
            var r = new PairedRound(imagesPerRound, raw.Seconds * imagesPerRound / raw.Count, level.Stats.Seconds, ml.Seconds * imagesPerRound / ml.Images, level.MeanBatchSize);
            results.Paired.Add(r);
            log($"paired round {round + 1}: raw ORT b16 {imagesPerRound / r.RawOrt16Seconds:F1}, Predict c16 {imagesPerRound / r.Predict16Seconds:F1}, ML.NET {imagesPerRound / r.MlNetSeconds:F1} img/s");
        }
        results.PairedLoadAverage = (loadStart + MachineInfoReader.LoadAverage()) / 2;
        foreach (var s in sessions) s.Dispose();
    }

    /// <summary>Re-runs only the ML.NET trainers on the feature files a run saved in bench/out/work (no service, no new features).</summary>
    public void RescoreMlNet(Results results)
    {
        var testPath = Path.Combine(_work, "features-test.bin");
        foreach (var perClass in plan.CurvePerClass.Append(plan.TrainPerClass).Distinct().Order())
        {
            var ml = MlNet.RunTrainers(Path.Combine(_work, $"features-train-{perClass}.bin"), testPath);
            if (perClass == plan.TrainPerClass)
            {
                results.MlNetClassifierAccuracy = ml.ClassifierAccuracy;
                results.MlNetClassifierSeconds = ml.ClassifierTrainSeconds;
                results.MlNetRegressorMae = ml.RegressorMae;
                results.MlNetRegressorSeconds = ml.RegressorTrainSeconds;
                results.PredictedClassMeanMae = ml.PredictedClassMeanMae;
            }
            var index = results.Curve.FindIndex(p => p.PerClass == perClass);
            if (index >= 0) results.Curve[index] = results.Curve[index] with { MlNet = ml.ClassifierAccuracy };
            log($"ML.NET rescored, {perClass}/class: {ml.ClassifierAccuracy:P1}");
        }
    }

    /// <summary>Where the 10-head cost goes: HeadService Predict alone, on one feature vector, 1 head against 10 alternating.</summary>
    private async Task ProfileHeadCostAsync(Results results, GraftStack stack, HeadSpec template, List<V1.FeatureRow> rows)
    {
        var names = new List<string> { template.Name };
        for (var k = 1; k < 10; k++)
        {
            var spec = template.Clone();
            spec.Name = $"profile-{k}";
            await new GraftCalls(stack).TrainOnFeaturesAsync(spec, rows);
            names.Add(spec.Name);
        }
        var one = new List<double>();
        var ten = new List<double>();
        var request = (bool all) =>
        {
            var r = new HeadPredictRequest { BackboneFingerprint = template.BackboneFingerprint, TopK = 1 };
            r.Features.AddRange(rows[0].Features);
            r.Heads.AddRange(all ? names : names.Take(1));
            return r;
        };
        for (var i = 0; i < 40; i++) await stack.Heads.PredictAsync(request(i % 2 == 1)); // warm-up: load every head
        for (var i = 0; i < 600; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await stack.Heads.PredictAsync(request(i % 2 == 1));
            (i % 2 == 1 ? ten : one).Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        results.HeadsOnlyOne = LatencyStats.From(one, one.Sum() / 1000, one.Count);
        results.HeadsOnlyTen = LatencyStats.From(ten, ten.Sum() / 1000, ten.Count);
        log($"HeadService Predict alone: 1 head p50 {results.HeadsOnlyOne.P50Ms:F2} ms, 10 heads p50 {results.HeadsOnlyTen.P50Ms:F2} ms");
    }

    public async Task<Results> RunAsync()
    {
        var total = Stopwatch.StartNew();
        Directory.CreateDirectory(_work);
        var results = new Results { Machine = MachineInfoReader.Read(repoRoot), Plan = plan.Name };
        log($"machine: {results.Machine.Cpu}, {results.Machine.Cores} cores, load {results.Machine.LoadAverageStart}");

        _train = FashionMnist.Load("train");
        _test = FashionMnist.Load("t10k").Take(plan.TestImages).ToList();
        var trainSet = FashionMnist.FirstPerClass(_train, plan.TrainPerClass);
        var trainLengths = FashionMnist.DrawLengths(trainSet, LengthSeed);
        var testLengths = FashionMnist.DrawLengths(_test, LengthSeed + 1);
        results.TrainImages = trainSet.Count;
        results.TestImages = _test.Count;
        results.NoiseFloorExpectedMae = FashionMnist.ExpectedNoiseFloorMae(_test);
        results.NoiseFloorOracleMae = _test.Select((img, i) => Math.Abs(testLengths[i] - FashionMnist.Classes[img.Label].Mean)).Average();

        RunRawOrt(results);
        RunMlNetPipeline(results, trainSet, trainLengths);

        if (withServices)
        {
            await using var stack = await GraftStack.StartAsync(repoRoot, _work, TimeSpan.FromMinutes(3));
            var calls = new GraftCalls(stack);
            log("services: SERVING");
            await RunExtractAsync(results, stack, calls);
            await RunTrainAndRetrainAsync(results, stack, calls, trainSet, trainLengths);
            await RunPredictAsync(results, stack, calls);
            RunRawOrt(results, repeat: true);
            // After the limit's second measurement, so that it still brackets the Predict rows alone.
            results.FineTunedPredict = await RunFineTunedPredictAsync(stack, calls);
            await RunQualityAsync(results, calls, trainSet, testLengths);
            await RunHeadsComparisonAsync(results, calls);
            await RunHeadTrainingGridAsync(results, calls);
        }
        else
        {
            results.Pending.Add("Graft service rows (Extract, Predict, 1 vs 10 heads, fine-tuned vs frozen Predict, head training, retraining, Graft heads' quality): " +
                "the services were not run (--no-services).");
            RunMlNetOnLocalFeatures(results, trainSet, testLengths);
        }

        if (withInt8) await RunInt8Async(results, trainSet, trainLengths, testLengths);
        RunScratchCnn(results);
        results.LoadAverageEnd = MachineInfoReader.LoadAverage();
        results.TotalSeconds = total.Elapsed.TotalSeconds;
        return results;
    }

    private IReadOnlyList<FashionImage> FreshImages(int count)
    {
        var images = _train.Skip(_speedCursor).Take(count).ToList();
        _speedCursor += count;
        return images;
    }

    /// <summary>Opens a layout's sessions of the fp32 model (or of <paramref name="modelBytes"/>).</summary>
    private static IReadOnlyList<ResNet18> OpenLayout(RawLayout layout, byte[]? modelBytes = null) =>
        Enumerable.Range(0, layout.Sessions).Select(_ => ResNet18.Load(layout.Threads, layout.Spinning, modelBytes)).ToList();

    /// <summary>The limit: first a sweep of raw layouts (the best batch-16 throughput is the baseline), then the best
    /// layout at batch 1 and 16; with <paramref name="repeat"/>, the best layout again to bracket the service rows.</summary>
    private void RunRawOrt(Results results, bool repeat = false)
    {
        var pool = FreshImages(16);
        if (!repeat)
        {
            log($"raw ORT: layout sweep on {Environment.ProcessorCount} cores ({plan.SweepRounds} interleaved rounds)");
            results.RawLayouts.Clear();
            results.RawLayouts.AddRange(RawLayoutSweep.Run(pool, plan.RawOrtImages, plan.SweepRounds, l => OpenLayout(l), log));
            results.BestRawLayout = results.RawLayouts.MaxBy(r => r.Batch16ImagesPerSecond)!.Layout;
        }
        var best = results.BestRawLayout ?? new RawLayout(1, Environment.ProcessorCount, false);
        log($"raw ORT, best layout {best.Name}: batch 1 and 16{(repeat ? " (again, services idle)" : "")}");
        var sessions = OpenLayout(best);
        try
        {
            if (!repeat) results.RawOrtBatchMaxDifference = RawOrtBench.BatchConsistency(sessions[0], pool);
            var ones = RawLayoutSweep.Batch1(sessions[0], pool, plan.RawOrtImages / 2);
            var b1 = LatencyStats.From(ones, ones.Sum() / 1000, ones.Count);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var (count, seconds) = RawLayoutSweep.Batch16(sessions, pool, plan.RawOrtImages);
            var perRunMs = seconds * 1000 / (count / 16.0 / best.Sessions);
            var b16 = new LatencyStats(count, seconds, perRunMs, perRunMs, perRunMs, perRunMs);
            if (!repeat) results.RawOrt16CpuMsPerImage = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds / count;
            if (repeat) (results.RawOrtBatch1Repeat, results.RawOrtBatch16Repeat) = (b1, b16);
            else (results.RawOrtBatch1, results.RawOrtBatch16) = (b1, b16);
            log($"  batch 1: {b1.Throughput:F1} img/s (p50 {b1.P50Ms:F1} ms), batch 16: {b16.Throughput:F1} img/s");
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    private void RunMlNetPipeline(Results results, IReadOnlyList<FashionImage> trainSet, double[] trainLengths)
    {
        log("ML.NET pipeline");
        var images = trainSet.Take(plan.MlNetPipelineImages).ToList();
        var r = MlNet.RunPipeline(images, trainLengths);
        results.MlNet = new MlNetPipeline(r.Images, r.Seconds, r.ImagesPerSecond);
        log($"  {r.ImagesPerSecond:F1} img/s over {r.Images} images");
    }

    private MlNetProcess MlNet => new(
        Path.Combine(repoRoot, "bench", "MlNetBaseline", "bin", "Release", "net10.0", "linux-x64", "Graft.Bench.MlNet.dll"), _work);

    /// <summary>Runs one closed-loop level and records, besides timing, the backbone's mean batch and each process's CPU per image.</summary>
    private static async Task<LevelResult> MeasureLevelAsync(GraftStack stack, int concurrency, int requests, Func<int, Task<bool>> call)
    {
        var inferences = await stack.ReadBackboneCounterAsync("graft_backbone_inferences_total");
        var batches = await stack.ReadBackboneCounterAsync("graft_backbone_batches_total");
        var stages = await ReadStagesAsync(stack);
        var threads = stack.ProcessIds.ToDictionary(p => p.Key, p => ThreadCpuSnapshot.Read(p.Value));
        var cpu = stack.CpuSeconds();
        var (stats, hits) = await LoadRunner.RunAsync(concurrency, requests, call);
        var cpuAfter = stack.CpuSeconds();
        var threadsAfter = stack.ProcessIds.ToDictionary(p => p.Key, p => ThreadCpuSnapshot.Read(p.Value));
        var dInferences = await stack.ReadBackboneCounterAsync("graft_backbone_inferences_total") - inferences;
        var dBatches = await stack.ReadBackboneCounterAsync("graft_backbone_batches_total") - batches;
        var stagesAfter = await ReadStagesAsync(stack);
        var cpuPerImage = cpuAfter.ToDictionary(p => p.Key, p => (p.Value - cpu.GetValueOrDefault(p.Key)) * 1000 / requests);
        return new LevelResult(concurrency, stats, hits, dBatches > 0 ? dInferences / dBatches : double.NaN, cpuPerImage)
        {
            StageMs = StageMeansMs(stages, stagesAfter),
            ThreadCpuMsPerImage = threadsAfter
                .Where(p => threads.GetValueOrDefault(p.Key) is not null && p.Value is not null)
                .ToDictionary(p => p.Key, p => p.Value!.ByNameSince(threads[p.Key]!).ToDictionary(t => t.Key, t => t.Value / requests)),
        };
    }

    /// <summary>Brings the stack to steady state before a section measures it: calls at concurrency 1 and 16, then a
    /// wait until no service's tiered-compilation thread is compiling any more. With 8 calls, the first measured level
    /// (concurrency 1) paid for the JIT's recompilation of the services' hot paths: the ".NET Tiered Compilation"
    /// threads of the Gateway and HeadService burned 8-27 ms of CPU per image there and 0.5 at concurrency 32, a core
    /// taken from ONNX Runtime (bench --where; see bench/README.md). On a loaded machine that backlog outlasts any fixed
    /// pause, hence the wait on the JIT threads' own CPU time.</summary>
    private async Task WarmUpAsync<T>(GraftStack stack, Func<FashionImage, Task<T>> call)
    {
        foreach (var concurrency in new[] { 1, 16 })
        {
            var images = FreshImages(WarmUpCalls);
            await LoadRunner.RunAsync(concurrency, images.Count, async i => { await call(images[i]); return false; });
        }
        var waited = Stopwatch.StartNew();
        var jit = JitCpuMs(stack);
        var quiet = 0;
        // Under 1 ms of compilation in each of two half seconds in a row: the backlog is done (one quiet half second
        // on a loaded machine may only mean the compiler got no core).
        while (quiet < 2 && waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(500);
            var now = JitCpuMs(stack);
            quiet = now - jit < 1 ? quiet + 1 : 0;
            jit = now;
        }
        log($"warm-up: {2 * WarmUpCalls} calls, then {waited.Elapsed.TotalSeconds:F1} s until the services' JIT went quiet");
    }

    /// <summary>CPU ms the services' tiered-compilation threads (".NET Tiered Com...") have used so far.</summary>
    private static double JitCpuMs(GraftStack stack) => stack.ProcessIds.Values
        .Select(ThreadCpuSnapshot.Read)
        .Sum(s => s?.Threads.Values.Where(t => t.Name.StartsWith(".NET Tiered Com", StringComparison.Ordinal)).Sum(t => t.CpuMs) ?? 0);

    /// <summary>Calls per concurrency in <see cref="WarmUpAsync{T}"/>: past the runtime's 30-call tier-up threshold
    /// for every method on the path, with its instrumented tier in between.</summary>
    private int WarmUpCalls => plan.Name == "quick" ? 40 : 120;

    private async Task RunExtractAsync(Results results, GraftStack stack, GraftCalls calls)
    {
        // Warm-up: first runs plan the graph and fill the pools.
        await WarmUpAsync(stack, calls.ExtractAsync);
        foreach (var c in plan.Concurrency)
        {
            var images = FreshImages(plan.RequestsPerLevel);
            var level = await MeasureLevelAsync(stack, c, images.Count, async i => (await calls.ExtractAsync(images[i])).CacheHit);
            results.Extract.Add(level);
            log($"extract c{c}: {level.Stats.Throughput:F1} img/s p50 {level.Stats.P50Ms:F0} ms p99 {level.Stats.P99Ms:F0} ms, cache hits {level.CacheHits}, mean batch {level.MeanBatchSize:F1}");
        }
    }

    private async Task RunTrainAndRetrainAsync(Results results, GraftStack stack, GraftCalls calls,
        IReadOnlyList<FashionImage> trainSet, double[] trainLengths)
    {
        // The first head sees the images for the first time; the next two reuse them and should cost no backbone run.
        var specs = new (HeadSpec Spec, double[]? Values)[]
        {
            (Spec(MlpHead, HeadKind.Classifier, hidden: null), null),
            (Spec(ProbeHead, HeadKind.Classifier, hidden: []), null),
            (Spec(RegressorHead, HeadKind.Regressor, hidden: null), trainLengths),
        };
        foreach (var (spec, values) in specs)
        {
            var before = await stack.ReadBackboneCounterAsync("graft_backbone_inferences_total");
            var trained = await calls.TrainThroughGatewayAsync(spec, trainSet, values);
            var after = await stack.ReadBackboneCounterAsync("graft_backbone_inferences_total");
            var run = new TrainRun(spec.Name, trainSet.Count, (after - before) / trainSet.Count, trained.ExtractSeconds, trained.TotalSeconds);
            results.Retrain.Add(run);
            log($"train {spec.Name}: {run.BackboneRunsPerImage:F2} backbone runs/image, extract {run.ExtractSeconds:F1} s, total {run.TotalSeconds:F1} s");
        }
    }

    private HeadSpec Spec(string name, HeadKind kind, int[]? hidden, int? epochs = null)
    {
        var spec = new HeadSpec
        {
            Name = name,
            Kind = kind,
            Epochs = epochs ?? plan.HeadEpochs,
            ValidationFraction = 0, // every training image trains, as for ML.NET and the CNN; the test set measures
            Seed = 42,
            Description = "bench",
        };
        if (hidden is not null)
        {
            spec.Hidden = new HiddenLayers();
            spec.Hidden.Sizes.AddRange(hidden);
        }
        return spec;
    }

    private async Task RunPredictAsync(Results results, GraftStack stack, GraftCalls calls)
    {
        string[] heads = [MlpHead];
        await WarmUpAsync(stack, image => calls.PredictAsync(image, heads));
        foreach (var c in plan.Concurrency)
        {
            var images = FreshImages(plan.RequestsPerLevel);
            var level = await MeasureLevelAsync(stack, c, images.Count, async i => (await calls.PredictAsync(images[i], heads)).CacheHit);
            results.Predict.Add(level);
            log($"predict c{c}: {level.Stats.Throughput:F1} img/s p50 {level.Stats.P50Ms:F0} ms p99 {level.Stats.P99Ms:F0} ms, cache hits {level.CacheHits}, mean batch {level.MeanBatchSize:F1}");
        }
    }

    private async Task RunQualityAsync(Results results, GraftCalls calls, IReadOnlyList<FashionImage> trainSet, double[] testLengths)
    {
        // Curve heads: the same MLP spec on other training-set sizes (the planned size is the MLP head itself).
        var curveHeads = new Dictionary<int, string> { [plan.TrainPerClass] = MlpHead };
        foreach (var perClass in plan.CurvePerClass.Where(n => n != plan.TrainPerClass))
        {
            var name = $"fashion-mlp-{perClass}";
            var images = FashionMnist.FirstPerClass(_train, perClass);
            await calls.TrainThroughGatewayAsync(Spec(name, HeadKind.Classifier, hidden: null), images, null);
            curveHeads[perClass] = name;
            log($"trained curve head {name} on {images.Count} images");
        }

        // One pass over the test set answers every head at once (one backbone run per image).
        var heads = new[] { MlpHead, ProbeHead, RegressorHead }.Concat(curveHeads.Values).Distinct().ToArray();
        var replies = new PredictReply[_test.Count];
        await LoadRunner.RunAsync(16, _test.Count, async i =>
        {
            replies[i] = await calls.PredictAsync(_test[i], heads);
            return replies[i].CacheHit;
        });
        double Accuracy(string head) => _test.Select((img, i) =>
            replies[i].Results.Single(r => r.Head == head).Top[0].Label == img.ClassName ? 1.0 : 0.0).Average();
        results.GraftClassifierAccuracy = Accuracy(MlpHead);
        results.GraftLinearProbeAccuracy = Accuracy(ProbeHead);
        results.GraftRegressorMae = _test.Select((_, i) => Math.Abs(replies[i].Results.Single(r => r.Head == RegressorHead).Value - testLengths[i])).Average();
        log($"graft: mlp {results.GraftClassifierAccuracy:P1}, probe {results.GraftLinearProbeAccuracy:P1}, regressor MAE {results.GraftRegressorMae:F2}");

        // ML.NET on the very features the Graft heads saw: the backbone's (now cached) features of the same images.
        var maxPerClass = plan.CurvePerClass.Max();
        var curveTrain = FashionMnist.FirstPerClass(_train, Math.Max(maxPerClass, plan.TrainPerClass));
        var allLengths = FashionMnist.DrawLengths(trainSet, LengthSeed);
        var trainFeatures = await ExtractRowsAsync(calls, curveTrain, null);
        var testFeatures = await ExtractRowsAsync(calls, _test, testLengths);
        var testPath = Path.Combine(_work, "features-test.bin");
        FeatureFile.Write(testPath, testFeatures);

        foreach (var perClass in plan.CurvePerClass.Append(plan.TrainPerClass).Distinct().Order())
        {
            var subset = FashionMnist.FirstPerClass(curveTrain, perClass);
            var byIndex = curveTrain.Select((img, k) => (img.Index, Row: trainFeatures[k])).ToDictionary(p => p.Index, p => p.Row);
            // The planned training set keeps its own length draws, so ML.NET's regressor sees the Graft regressor's targets.
            var lengthByIndex = trainSet.Select((img, k) => (img.Index, allLengths[k])).ToDictionary(p => p.Index, p => p.Item2);
            var rows = subset.Select(img => byIndex[img.Index] with { Length = (float)lengthByIndex.GetValueOrDefault(img.Index) }).ToList();
            var trainPath = Path.Combine(_work, $"features-train-{perClass}.bin");
            FeatureFile.Write(trainPath, rows);
            var ml = MlNet.RunTrainers(trainPath, testPath);
            if (perClass == plan.TrainPerClass)
            {
                results.MlNetClassifierAccuracy = ml.ClassifierAccuracy;
                results.MlNetClassifierSeconds = ml.ClassifierTrainSeconds;
                results.MlNetRegressorMae = ml.RegressorMae;
                results.MlNetRegressorSeconds = ml.RegressorTrainSeconds;
                results.PredictedClassMeanMae = ml.PredictedClassMeanMae;
            }
            double? graft = curveHeads.TryGetValue(perClass, out var head) ? Accuracy(head) : null;
            double? probe = perClass == plan.TrainPerClass ? results.GraftLinearProbeAccuracy : null;
            results.Curve.Add(new CurvePoint(perClass, graft, probe, ml.ClassifierAccuracy, null, null));
            log($"curve {perClass}/class: graft {graft:P1}, ML.NET {ml.ClassifierAccuracy:P1}");
        }
    }

    /// <summary>Without the services: ML.NET's trainers on features from the in-process ResNet18 (the bench's own preprocessing).</summary>
    private void RunMlNetOnLocalFeatures(Results results, IReadOnlyList<FashionImage> trainSet, double[] testLengths)
    {
        using var model = ResNet18.Load();
        var curveTrain = FashionMnist.FirstPerClass(_train, Math.Max(plan.CurvePerClass.Max(), plan.TrainPerClass));
        var trainLengths = FashionMnist.DrawLengths(trainSet, LengthSeed);
        var lengthByIndex = trainSet.Select((img, k) => (img.Index, trainLengths[k])).ToDictionary(p => p.Index, p => p.Item2);
        var trainRows = LocalFeatures(model, curveTrain, curveTrain.Select(i => lengthByIndex.GetValueOrDefault(i.Index)).ToArray());
        var testPath = Path.Combine(_work, "features-test.bin");
        FeatureFile.Write(testPath, LocalFeatures(model, _test, testLengths));
        results.Notes.Add("ML.NET rows use features from the bench's in-process ResNet18 (its own resize and mean subtraction), " +
                          "not the BackboneService's, because the services were not run.");
        foreach (var perClass in plan.CurvePerClass.Append(plan.TrainPerClass).Distinct().Order())
        {
            var keep = FashionMnist.FirstPerClass(curveTrain, perClass).Select(i => i.Index).ToHashSet();
            var trainPath = Path.Combine(_work, $"features-train-{perClass}.bin");
            FeatureFile.Write(trainPath, curveTrain.Select((img, k) => (img, k)).Where(p => keep.Contains(p.img.Index)).Select(p => trainRows[p.k]).ToList());
            var ml = MlNet.RunTrainers(trainPath, testPath);
            if (perClass == plan.TrainPerClass)
            {
                results.MlNetClassifierAccuracy = ml.ClassifierAccuracy;
                results.MlNetClassifierSeconds = ml.ClassifierTrainSeconds;
                results.MlNetRegressorMae = ml.RegressorMae;
                results.MlNetRegressorSeconds = ml.RegressorTrainSeconds;
            }
            results.Curve.Add(new CurvePoint(perClass, null, null, ml.ClassifierAccuracy, null, null));
            log($"ML.NET on local features, {perClass}/class: {ml.ClassifierAccuracy:P1}");
        }
    }

    private static List<FeatureRow> LocalFeatures(ResNet18 model, IReadOnlyList<FashionImage> images, double[] lengths)
    {
        const int batch = 16, plane = 3 * ResNet18.ImageSide * ResNet18.ImageSide;
        var rows = new List<FeatureRow>(images.Count);
        foreach (var chunk in images.Select((img, i) => (img, i)).Chunk(batch))
        {
            var input = new float[chunk.Length * plane];
            for (var b = 0; b < chunk.Length; b++) model.Preprocess(chunk[b].img.Pixels, input.AsSpan(b * plane, plane));
            var features = model.Run(input, chunk.Length);
            for (var b = 0; b < chunk.Length; b++)
            {
                rows.Add(new FeatureRow(chunk[b].img.Label, (float)lengths[chunk[b].i],
                    features.AsSpan(b * ResNet18.FeatureDimension, ResNet18.FeatureDimension).ToArray()));
            }
        }
        return rows;
    }

    private static async Task<List<FeatureRow>> ExtractRowsAsync(GraftCalls calls, IReadOnlyList<FashionImage> images, double[]? lengths)
    {
        var rows = new FeatureRow[images.Count];
        await LoadRunner.RunAsync(16, images.Count, async i =>
        {
            var reply = await calls.ExtractAsync(images[i]);
            rows[i] = new FeatureRow(images[i].Label, (float)(lengths?[i] ?? 0), reply.Features.ToArray());
            return reply.CacheHit;
        });
        return [.. rows];
    }

    private async Task RunHeadsComparisonAsync(Results results, GraftCalls calls)
    {
        // Ten heads: the three quality heads and extra classifiers trained straight on features (fast, no images).
        var fingerprint = (await calls.ExtractAsync(_train[0])).Fingerprint;
        var rows = (await ExtractRowsAsync(calls, FashionMnist.FirstPerClass(_train, plan.TrainPerClass), null))
            .Select(r => { var row = new V1.FeatureRow { Label = FashionMnist.Classes[r.Label].Name }; row.Features.AddRange(r.Features); return row; })
            .ToList();
        var heads = new List<string> { MlpHead, ProbeHead, RegressorHead };
        for (var k = heads.Count; k < 10; k++)
        {
            var spec = Spec($"extra-{k}", HeadKind.Classifier, hidden: k % 2 == 0 ? [128] : [], epochs: 5);
            spec.BackboneFingerprint = fingerprint;
            await calls.TrainOnFeaturesAsync(spec, rows);
            heads.Add(spec.Name);
        }

        // Alternate 1 head and 10 heads request by request at concurrency 1, so drift in machine load hits both alike.
        string[] one = [MlpHead];
        var ten = heads.ToArray();
        var images = FreshImages(2 * plan.HeadsComparisonRequests);
        foreach (var image in FreshImages(4)) await calls.PredictAsync(image, ten);
        var oneLatencies = new List<double>();
        var tenLatencies = new List<double>();
        var oneTime = 0.0;
        var tenTime = 0.0;
        for (var i = 0; i < images.Count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            var reply = await calls.PredictAsync(images[i], i % 2 == 0 ? one : ten);
            var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (reply.Results.Count != (i % 2 == 0 ? 1 : 10)) throw new InvalidOperationException($"Expected {(i % 2 == 0 ? 1 : 10)} head results, got {reply.Results.Count}.");
            if (i % 2 == 0) { oneLatencies.Add(ms); oneTime += ms / 1000; }
            else { tenLatencies.Add(ms); tenTime += ms / 1000; }
        }
        results.PredictOneHead = LatencyStats.From(oneLatencies, oneTime, oneLatencies.Count);
        results.PredictTenHeads = LatencyStats.From(tenLatencies, tenTime, tenLatencies.Count);
        log($"1 head p50 {results.PredictOneHead.P50Ms:F1} ms, 10 heads p50 {results.PredictTenHeads.P50Ms:F1} ms");
    }

    private async Task RunHeadTrainingGridAsync(Results results, GraftCalls calls)
    {
        foreach (var (dimension, grid) in new[] { (512, plan.Grid512), (25088, plan.Grid25088) })
        {
            var maxRows = grid.Max(g => g.Rows);
            var rows = SyntheticRows(dimension, maxRows, seed: dimension);
            foreach (var (rowCount, epochs) in grid)
            {
                var spec = Spec($"grid-{dimension}-{rowCount}-{epochs}", HeadKind.Classifier, hidden: [256], epochs: epochs);
                spec.BackboneFingerprint = "bench-synthetic";
                spec.Dropout = 0.2;
                var trained = await calls.TrainOnFeaturesAsync(spec, rows.Take(rowCount).ToList());
                var time = new TrainingTime(dimension, rowCount, epochs, trained.Version.Metrics.TrainingSeconds, trained.TotalSeconds);
                results.HeadTraining.Add(time);
                log($"train {dimension}-d, {rowCount} rows, {epochs} epochs: {time.TrainingSeconds:F2} s (wall {time.WallSeconds:F2} s)");
            }
        }
    }

    // Ten Gaussian clusters: the timing depends on the shapes only, but learnable rows keep the run honest.
    private static List<V1.FeatureRow> SyntheticRows(int dimension, int count, int seed)
    {
        var random = new Random(seed);
        var centres = Enumerable.Range(0, 10).Select(_ => Enumerable.Range(0, dimension).Select(_ => (float)random.NextDouble()).ToArray()).ToArray();
        var rows = new List<V1.FeatureRow>(count);
        for (var i = 0; i < count; i++)
        {
            var label = i % 10;
            var row = new V1.FeatureRow { Label = $"c{label}" };
            var values = new float[dimension];
            for (var k = 0; k < dimension; k++) values[k] = centres[label][k] + 0.5f * (float)(random.NextDouble() - 0.5);
            row.Features.AddRange(values);
            rows.Add(row);
        }
        return rows;
    }

    private void RunScratchCnn(Results results)
    {
        foreach (var perClass in plan.CurvePerClass.Append(plan.TrainPerClass).Distinct().Order())
        {
            var r = ScratchCnn.TrainAndTest(FashionMnist.FirstPerClass(_train, perClass), _test);
            log($"CNN from scratch, {perClass}/class: {r.Accuracy:P1} in {r.TrainSeconds:F1} s ({r.Epochs} epochs)");
            if (perClass == plan.TrainPerClass)
            {
                results.CnnAccuracy = r.Accuracy;
                results.CnnSeconds = r.TrainSeconds;
                results.CnnEpochs = r.Epochs;
            }
            var index = results.Curve.FindIndex(p => p.PerClass == perClass);
            if (index >= 0) results.Curve[index] = results.Curve[index] with { Cnn = r.Accuracy, CnnSeconds = r.TrainSeconds };
            else results.Curve.Add(new CurvePoint(perClass, null, null, null, r.Accuracy, r.TrainSeconds));
        }
        results.Curve.Sort((a, b) => a.PerClass.CompareTo(b.PerClass));
    }
}

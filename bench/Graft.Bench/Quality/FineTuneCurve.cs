using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Graft.Backbone;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Bench.Data;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Bench.Quality;

/// <summary>One measured point of the depth/accuracy curve.</summary>
public sealed record FineTunePoint(int PerClass, CurveDepth Depth, int Views, string Choices, double Accuracy, double TrainingSeconds,
    int EpochsRun, int TrainRows, double LoadAverage);

/// <summary>A regressor measured on the curve's split: test MAE in cm.</summary>
public sealed record FineTuneRegressor(int PerClass, CurveDepth Depth, int Views, double Mae, double TrainingSeconds, double LoadAverage);

/// <summary>Everything <c>--finetune-curve</c> measured; saved after every point so a stopped run resumes.</summary>
public sealed class FineTuneCurveResults
{
    public int TestImages { get; set; }
    public long AugmentationSeed { get; set; }
    public string Backbone { get; set; } = "";
    public List<FineTunePoint> Points { get; set; } = [];
    public List<FineTuneRegressor> Regressors { get; set; } = [];
    /// <summary>CNN from scratch at each size: (per class, accuracy, training seconds).</summary>
    public List<CurvePoint> Cnn { get; set; } = [];
    public List<string> Extractions { get; set; } = [];
    public double NoiseFloorMae { get; set; }
    public List<double> LoadAverages { get; set; } = [];

    public FineTunePoint? Find(int perClass, CurveDepth depth, int views, string choices) =>
        Points.FirstOrDefault(p => p.PerClass == perClass && p.Depth == depth && p.Views == views && p.Choices == choices);
}

/// <summary>
/// The depth/accuracy curve of issue 11, in process: BackboneService's own model, preprocessing and augmentation give
/// the final features and the cut-point activations (cached per split on disk in bench/out/curve), and HeadService's
/// training code (<see cref="ProductTraining"/>) trains every depth. Same split and lengths as the quality rows: the
/// first N training images per class, the first 2,000 test images.
/// </summary>
public sealed class FineTuneCurve(string outDir, Action<string> log, int testImages = 2000, int views = 2)
{
    public const long AugmentationSeed = 42;
    private const int LengthSeed = 1234;
    private static readonly int[] Sizes = [10, 30, 100, 300];
    private static readonly CurveDepth[] Frozen = [CurveDepth.Probe, CurveDepth.Mlp];
    private readonly JsonSerializerOptions _json = new() { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };
    // Declared before TriedChoices, which uses it: static fields initialise in textual order.
    private static readonly CurveTrainingChoices PrototypeTailRate = new(TailLearningRate: 1e-4);
    /// <summary>Training choices tried against the product defaults at 100 per class, on the last block: the issue's
    /// prototype tail rate (1e-4, the default until this curve), and with it a 20 % hold-out with and without early
    /// stopping.</summary>
    public static readonly IReadOnlyList<CurveTrainingChoices> TriedChoices =
    [
        PrototypeTailRate,
        new(TailLearningRate: 1e-4, ValidationFraction: 0.2, Patience: 3),
        new(TailLearningRate: 1e-4, Epochs: 30, ValidationFraction: 0.2), // HeadService's general defaults
        new(TailLearningRate: 1e-4, Epochs: 30, ValidationFraction: 0.2, Patience: 6),
    ];

    private string ResultsPath => Path.Combine(outDir, "curve.json");

    /// <summary>What an earlier (possibly stopped) run measured.</summary>
    public FineTuneCurveResults Load() => File.Exists(ResultsPath)
        ? JsonSerializer.Deserialize<FineTuneCurveResults>(File.ReadAllText(ResultsPath), _json)!
        : throw new FileNotFoundException($"No curve measured yet: {ResultsPath} is missing; run bench/run.sh --finetune-curve.", ResultsPath);

    public FineTuneCurveResults Run(IReadOnlyList<CurveTrainingChoices> extraChoices)
    {
        Directory.CreateDirectory(outDir);
        var results = File.Exists(ResultsPath) ? JsonSerializer.Deserialize<FineTuneCurveResults>(File.ReadAllText(ResultsPath), _json)! : new FineTuneCurveResults();
        results.TestImages = testImages;
        results.AugmentationSeed = AugmentationSeed;
        results.LoadAverages.Add(MachineInfoReader.LoadAverage());

        var train = FashionMnist.Load("train");
        var test = FashionMnist.Load("t10k").Take(testImages).ToList();
        var pool = FashionMnist.FirstPerClass(train, Sizes.Max());
        var poolLengths = FashionMnist.DrawLengths(FashionMnist.FirstPerClass(train, 100), LengthSeed); // as the quality rows draw them
        var testLengths = FashionMnist.DrawLengths(test, LengthSeed + 1);
        results.NoiseFloorMae = FashionMnist.ExpectedNoiseFloorMae(test);

        foreach (var n in Sizes.Where(n => results.Cnn.All(c => c.PerClass != n)))
        {
            var r = ScratchCnn.TrainAndTest(FashionMnist.FirstPerClass(train, n), test);
            results.Cnn.Add(new CurvePoint(n, null, null, null, r.Accuracy, r.TrainSeconds));
            log($"CNN from scratch, {n}/class: {r.Accuracy:P1} in {r.TrainSeconds:F1} s");
            Save(results);
        }

        var profile = BackboneProfiles.Resolve(new BackboneOptions(), AppContext.BaseDirectory);
        using var model = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance);
        results.Backbone = model.Fingerprint;
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var store = new CutFeatureStore(Path.Combine(outDir, "features"), model, preprocessor, log, results.Extractions);
        var training = new ProductTraining();

        // Two pools, so the sizes up to 100 per class need only 1,000 training extractions (300 per class adds 2,000).
        var pool100 = FashionMnist.FirstPerClass(train, 100);
        var pools = new Dictionary<int, (IReadOnlyList<FashionImage> Images, CutFeatureSet Set)>();
        (IReadOnlyList<FashionImage> Images, CutFeatureSet Set) PoolFor(int n)
        {
            var images = n <= 100 ? pool100 : pool;
            if (!pools.TryGetValue(images.Count, out var p)) pools[images.Count] = p = (images, store.Get("train", images, 0));
            return p;
        }
        PoolFor(100);
        var testSet = store.Get("test", test, 0);
        var testClasses = test.Select(t => t.Label).ToArray();

        void Classifier(int n, CurveDepth depth, int viewCount, CurveTrainingChoices choices)
        {
            var tag = choices.Describe();
            if (results.Find(n, depth, viewCount, tag) is not null) return;
            var (poolImages, poolSet) = PoolFor(n);
            var rows = Rows(store, poolImages, poolSet, n, depth, viewCount, poolLengths);
            var load = MachineInfoReader.LoadAverage();
            var cut = CutOf(model, depth);
            using var head = training.Train(depth, Graft.V1.HeadKind.Classifier, rows, cut?.TailOnnx, choices);
            var predicted = head.Predict(testSet.Read(depth, Enumerable.Range(0, test.Count).ToArray()), test.Count);
            var accuracy = predicted.Where((p, i) => (int)p == testClasses[i]).Count() / (double)test.Count;
            results.Points.Add(new FineTunePoint(n, depth, viewCount, tag, accuracy, head.TrainingSeconds, head.EpochsRun, rows.Rows, load));
            log($"{n}/class, {depth}, {viewCount} views, {tag}: {accuracy:P1} in {head.TrainingSeconds:F0} s ({head.EpochsRun} epochs, {rows.Rows} rows, load {load:F1})");
            Save(results);
        }

        void Regressor(int n, CurveDepth depth, int viewCount)
        {
            if (results.Regressors.Any(r => r.PerClass == n && r.Depth == depth && r.Views == viewCount)) return;
            var (poolImages, poolSet) = PoolFor(n);
            var rows = Rows(store, poolImages, poolSet, n, depth, viewCount, poolLengths);
            var load = MachineInfoReader.LoadAverage();
            using var head = training.Train(depth, Graft.V1.HeadKind.Regressor, rows, CutOf(model, depth)?.TailOnnx, CurveTrainingChoices.ProductDefaults);
            var predicted = head.Predict(testSet.Read(depth, Enumerable.Range(0, test.Count).ToArray()), test.Count);
            var mae = predicted.Select((p, i) => Math.Abs(p - testLengths[i])).Average();
            results.Regressors.Add(new FineTuneRegressor(n, depth, viewCount, mae, head.TrainingSeconds, load));
            log($"regressor {n}/class, {depth}, {viewCount} views: MAE {mae:F2} cm in {head.TrainingSeconds:F0} s");
            Save(results);
        }

        var defaults = CurveTrainingChoices.ProductDefaults;
        // On a shared 2-core machine every step is slow, so the order is the value order (each point is saved as it
        // comes): 1. the curve without augmentation up to 100 per class, cheapest depths first, so the thresholds for
        // `auto` come early, with the training choices at 100 per class right after the last block (they decide the
        // recipe of the deeper points); 2. the regressor and augmentation at 100 per class; 3. 300 per class (2,000
        // more extractions); 4. the rest of the augmented curve.
        foreach (var n in Sizes.Where(n => n <= 100)) foreach (var depth in Frozen.Append(CurveDepth.LastBlock)) Classifier(n, depth, 0, defaults);
        foreach (var choices in extraChoices) Classifier(100, CurveDepth.LastBlock, 0, choices);
        // The prototype's tail rate at the smaller sizes too: the default rate was chosen against it at every size.
        foreach (var n in Sizes.Where(n => n < 100)) Classifier(n, CurveDepth.LastBlock, 0, PrototypeTailRate);
        // The frozen depths with augmentation where they are the best depth (few images per class): seconds each.
        foreach (var n in Sizes.Where(n => n < 100)) foreach (var depth in Frozen) Classifier(n, depth, views, defaults);
        foreach (var n in Sizes.Where(n => n <= 100)) Classifier(n, CurveDepth.LastStage, 0, defaults);
        Classifier(100, CurveDepth.LastStage, 0, new(TailLearningRate: 3e-4)); // the last block's rate on twice the weights
        foreach (var depth in Frozen.Append(CurveDepth.LastBlock)) Regressor(100, depth, 0);
        foreach (var depth in Frozen) Classifier(100, depth, views, defaults);
        foreach (var depth in Frozen) Regressor(100, depth, views);
        Classifier(100, CurveDepth.LastBlock, views, defaults);
        foreach (var depth in Frozen.Append(CurveDepth.LastBlock).Append(CurveDepth.LastStage)) Classifier(300, depth, 0, defaults);
        Classifier(100, CurveDepth.LastStage, views, defaults);
        foreach (var n in Sizes.Where(n => n != 100)) foreach (var depth in Frozen.Append(CurveDepth.LastBlock).Append(CurveDepth.LastStage)) Classifier(n, depth, views, defaults);

        results.LoadAverages.Add(MachineInfoReader.LoadAverage());
        Save(results);
        return results;
    }

    private static CutPointOutput? CutOf(BackboneModel model, CurveDepth depth) => depth switch
    {
        CurveDepth.LastBlock => model.FindCutPoint("last-block"),
        CurveDepth.LastStage => model.FindCutPoint("last-stage"),
        _ => null,
    };

    /// <summary>The first <paramref name="n"/> images per class of the pool and, with views, that many augmented views of each.</summary>
    private CurveRows Rows(CutFeatureStore store, IReadOnlyList<FashionImage> pool, CutFeatureSet poolSet, int n, CurveDepth depth, int viewCount, double[] lengths100)
    {
        var subset = FashionMnist.FirstPerClass(pool, n);
        var position = pool.Select((img, i) => (img.Index, i)).ToDictionary(p => p.Index, p => p.i);
        var rowsOf = subset.Select(img => position[img.Index]).ToArray();
        // Lengths: the quality rows' draw for the first 100 per class; other sizes draw their own with the same seed.
        var drawn = n == 100 ? lengths100 : FashionMnist.DrawLengths(subset, 1234);
        var parts = new List<(float[] Features, FashionImage[] Images, bool Augmented)>
        {
            (poolSet.Read(depth, rowsOf), subset.ToArray(), false),
        };
        for (var view = 1; view <= viewCount; view++)
        {
            var viewSet = store.Get($"train{n}", subset, view);
            parts.Add((viewSet.Read(depth, Enumerable.Range(0, subset.Count).ToArray()), subset.ToArray(), true));
        }
        var dimension = (int)poolSet.Dimension(depth);
        var total = parts.Sum(p => p.Images.Length);
        var features = new float[(long)total * dimension];
        var offset = 0L;
        foreach (var p in parts)
        {
            p.Features.CopyTo(features.AsSpan((int)offset));
            offset += p.Features.Length;
        }
        var images = parts.SelectMany(p => p.Images).ToArray();
        return new CurveRows(total, dimension, features, images.Select(i => i.Label).ToArray(),
            parts.SelectMany(_ => drawn).ToArray(), images.Select(i => i.Index + 1).ToArray(), parts.SelectMany(p => p.Images.Select(_ => p.Augmented)).ToArray());
    }

    private void Save(FineTuneCurveResults results)
    {
        var temp = ResultsPath + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(results, _json));
        File.Move(temp, ResultsPath, overwrite: true);
    }
}

/// <summary>Final features and cut-point activations of one image set (one view), in raw float32 files on disk.</summary>
public sealed class CutFeatureSet(string directory, string name, BackboneModel model)
{
    private string PathOf(CurveDepth depth) => Path.Combine(directory, $"{name}-{OutputName(depth)}.f32");

    private static string OutputName(CurveDepth depth) => depth switch
    {
        CurveDepth.LastBlock => "last-block",
        CurveDepth.LastStage => "last-stage",
        _ => "final",
    };

    public long Dimension(CurveDepth depth) => depth switch
    {
        CurveDepth.LastBlock or CurveDepth.LastStage => model.FindCutPoint(OutputName(depth))!.Dimension,
        _ => model.FeatureDimension,
    };

    public bool Complete => Enum.GetValues<CurveDepth>().All(d => File.Exists(PathOf(d)));

    /// <summary>The rows <paramref name="rows"/> (positions in the set), flattened.</summary>
    public float[] Read(CurveDepth depth, int[] rows)
    {
        var dimension = (int)Dimension(depth);
        var result = new float[(long)rows.Length * dimension];
        using var file = File.OpenHandle(PathOf(depth));
        for (var i = 0; i < rows.Length; i++)
        {
            var target = MemoryMarshal.AsBytes(result.AsSpan(i * dimension, dimension));
            var read = RandomAccess.Read(file, target, (long)rows[i] * dimension * sizeof(float));
            if (read != target.Length) throw new InvalidDataException($"{PathOf(depth)} is short; delete it to extract again.");
        }
        return result;
    }

    /// <summary>Writers for every output, filled batch by batch, renamed into place at the end.</summary>
    public void Write(IEnumerable<float[][][]> batches)
    {
        var depths = new[] { CurveDepth.Mlp, CurveDepth.LastBlock, CurveDepth.LastStage };
        var streams = depths.Select(d => File.Create(PathOf(d) + ".tmp")).ToArray();
        try
        {
            foreach (var batch in batches)
            {
                foreach (var perInput in batch)
                {
                    for (var k = 0; k < depths.Length; k++) streams[k].Write(MemoryMarshal.AsBytes(perInput[k].AsSpan()));
                }
            }
        }
        finally
        {
            foreach (var s in streams) s.Dispose();
        }
        // Probe and MLP share the final features' file.
        foreach (var d in depths) File.Move(PathOf(d) + ".tmp", PathOf(d), overwrite: true);
    }
}

/// <summary>Extracts image sets once (final features + both cut points in one model run per batch) and keeps them on disk.</summary>
public sealed class CutFeatureStore(string directory, BackboneModel model, Preprocessor preprocessor, Action<string> log, List<string> extractions)
{
    public CutFeatureSet Get(string split, IReadOnlyList<FashionImage> images, int view)
    {
        Directory.CreateDirectory(directory);
        var name = view == 0 ? $"{split}-{images.Count}" : $"{split}-{images.Count}-view{view}-seed{FineTuneCurve.AugmentationSeed}";
        var set = new CutFeatureSet(directory, name, model);
        if (set.Complete) return set;
        var outputs = new List<int> { 0, model.FindCutPoint("last-block")!.Output, model.FindCutPoint("last-stage")!.Output };
        var clock = Stopwatch.StartNew();
        var load = MachineInfoReader.LoadAverage();
        var done = 0;
        set.Write(images.Chunk(16).Select(chunk =>
        {
            // The service's own path: decode, augment (view 0 = as sent), preprocess, one run for every output.
            var inputs = chunk.Select(img => preprocessor.Preprocess(img.Png, new AugmentationView(view, FineTuneCurve.AugmentationSeed))).ToList();
            var result = model.Run(inputs, outputs);
            done += chunk.Length;
            if (done % 400 < 16) log($"  extracting {name}: {done}/{images.Count}");
            return result;
        }));
        var line = $"{name}: {images.Count} images in {clock.Elapsed.TotalSeconds:F0} s ({images.Count / clock.Elapsed.TotalSeconds:F1}/s, load {load:F1})";
        extractions.Add(line);
        log("extracted " + line);
        return set;
    }
}

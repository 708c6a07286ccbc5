using System.Diagnostics;
using Google.Protobuf;
using Graft.Bench.Data;
using Graft.Bench.Hosting;
using Graft.Bench.Speed;
using Graft.V1;

namespace Graft.Bench;

/// <summary>Issue 11's Predict latency of a fine-tuned head against a frozen one: a frozen MLP head and a last-block head
/// trained through the Gateway on the same images, then Predict with either head alone and with both in one request,
/// in interleaved rounds so that load drift hits the three cases alike.</summary>
public sealed partial class Runner
{
    private const string FrozenLatencyHead = "latency-frozen-mlp";
    private const string FineTunedLatencyHead = "latency-last-block";

    /// <summary>The OpenTelemetry Prometheus exporter answers a scrape from a response it keeps for 300 ms (its default
    /// <c>ScrapeResponseCacheDurationMilliseconds</c>): a counter read sooner after the previous read may be stale, which
    /// a short phase (a <c>--quick</c> one lasts ~100 ms) would turn into 0 backbone runs per image.</summary>
    private static readonly TimeSpan ScrapeCacheMargin = TimeSpan.FromMilliseconds(400);

    /// <summary><c>--finetune-latency</c>: starts a stack and measures this section alone.</summary>
    public async Task<FineTunedPredictResults> RunFineTunedPredictAloneAsync()
    {
        Directory.CreateDirectory(_work);
        _train = FashionMnist.Load("train");
        await using var stack = await GraftStack.StartAsync(repoRoot, _work, TimeSpan.FromMinutes(3));
        log("services: SERVING");
        var result = await RunFineTunedPredictAsync(stack, new GraftCalls(stack));
        result.Alone = true;
        return result;
    }

    /// <summary>Trains the two heads, measures the wire size of the cut-point activations, warms up, then runs the
    /// interleaved rounds: frozen alone, fine-tuned alone, both in one request, at concurrency 1 and 16.</summary>
    private async Task<FineTunedPredictResults> RunFineTunedPredictAsync(GraftStack stack, GraftCalls calls)
    {
        var p = plan.FineTunedPredict;
        var timer = Stopwatch.StartNew();
        var result = new FineTunedPredictResults
        {
            Machine = MachineInfoReader.Read(repoRoot),
            Plan = plan.Name,
            PerClass = p.PerClass,
            Rounds = p.Rounds,
        };
        var describe = await stack.Backbone.DescribeAsync(new DescribeBackboneRequest());
        var cut = describe.CutPoints.FirstOrDefault(c => c.Name == HeadDepths.LastBlock)
            ?? throw new InvalidOperationException($"Backbone '{describe.Name}' offers no '{HeadDepths.LastBlock}' cut point " +
                $"(it offers: {string.Join(", ", describe.CutPoints.Select(c => c.Name).DefaultIfEmpty("none"))}); the fine-tuned Predict row needs one.");
        result.Backbone = describe.Name;
        result.CutPoint = cut.Name;
        result.CutShape = [.. cut.Shape];
        result.TailParameters = cut.TailParameters;

        // Both heads on the same images; accuracy is not the point here, so few epochs.
        var images = FashionMnist.FirstPerClass(_train, p.PerClass);
        log($"fine-tuned vs frozen Predict: training {FrozenLatencyHead} (mlp) and {FineTunedLatencyHead} ({HeadDepths.LastBlock}) on {images.Count} images");
        var frozen = Spec(FrozenLatencyHead, HeadKind.Classifier, hidden: null);
        frozen.Depth = HeadDepth.Mlp;
        var fineTuned = Spec(FineTunedLatencyHead, HeadKind.Classifier, hidden: null, epochs: p.FineTunedEpochs);
        fineTuned.Depth = HeadDepth.LastBlock;
        foreach (var spec in new[] { frozen, fineTuned })
        {
            var before = await ReadBackboneRunsAsync(stack);
            var trained = await calls.TrainThroughGatewayAsync(spec, images, null);
            var after = await ReadBackboneRunsAsync(stack);
            var wantCut = spec.Depth.CutPoint();
            if (trained.Version.CutPoint != wantCut)
            {
                throw new InvalidOperationException($"Head {spec.Name} was published with cut point '{trained.Version.CutPoint}', expected '{wantCut}'.");
            }
            var run = new TrainRun(spec.Name, images.Count, (after.Images - before.Images) / images.Count, trained.ExtractSeconds, trained.TotalSeconds);
            result.Training.Add(new FineTunedPredictTraining(spec.Depth.Name(), spec.Epochs, run, trained.Version.Metrics.TrainingSeconds));
            log($"  trained {spec.Name} ({spec.Depth.Name()}, {spec.Epochs} epochs): {run.BackboneRunsPerImage:F2} backbone runs/image, " +
                $"extract {run.ExtractSeconds:F1} s, training {trained.Version.Metrics.TrainingSeconds:F1} s, total {run.TotalSeconds:F1} s");
        }

        // Bytes on the wire: the backbone's reply without and with the cut point, for one image each (the activations
        // then cross a second socket, Gateway to HeadService, inside HeadPredictRequest).
        var probe = FreshImages(2);
        var plain = await stack.Backbone.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(probe[0].Png) }, deadline: DateTime.UtcNow.AddMinutes(2));
        var withCut = await stack.Backbone.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(probe[1].Png), CutPoints = { cut.Name } }, deadline: DateTime.UtcNow.AddMinutes(2));
        result.ExtractReplyBytes = plain.CalculateSize();
        result.ExtractReplyWithCutBytes = withCut.CalculateSize();
        result.CutFeaturesBytes = withCut.CutFeatures.Single().CalculateSize();
        log($"  wire: backbone reply {result.ExtractReplyBytes:N0} bytes, with '{cut.Name}' {result.ExtractReplyWithCutBytes:N0} bytes " +
            $"(activations [{string.Join(", ", result.CutShape)}], {result.CutFeaturesBytes:N0} bytes)");

        var cases = new (string Name, string[] Heads)[]
        {
            ("frozen", [FrozenLatencyHead]),
            ("fine-tuned", [FineTunedLatencyHead]),
            ("both", [FrozenLatencyHead, FineTunedLatencyHead]),
        };
        await WarmUpAsync(stack, image => calls.PredictAsync(image, cases[2].Heads));

        int[] levels = [1, 16];
        var pooled = cases.SelectMany(c => levels.Select(l => (c.Name, l))).ToDictionary(k => k, _ => new Pool());
        for (var round = 0; round < p.Rounds; round++)
        {
            foreach (var concurrency in levels)
            {
                // The case order rotates every round, so no case always runs first after a change of concurrency.
                for (var k = 0; k < cases.Length; k++)
                {
                    var (name, heads) = cases[(k + round) % cases.Length];
                    var count = concurrency == 1 ? p.CallsAtConcurrency1 : p.CallsAtConcurrency16;
                    await MeasurePredictPhaseAsync(stack, calls, heads, concurrency, count, pooled[(name, concurrency)]);
                }
            }
            log($"  round {round + 1}/{p.Rounds}: " + string.Join(", ", levels.Select(l =>
                $"c{l} p50 " + string.Join(" / ", cases.Select(c => $"{pooled[(c.Name, l)].LastP50Ms:F0}")) + " ms")) + " (frozen / fine-tuned / both)");
        }

        foreach (var (name, heads) in cases)
        {
            foreach (var concurrency in levels)
            {
                var pool = pooled[(name, concurrency)];
                var level = pool.Result(name, heads, concurrency);
                result.Levels.Add(level);
                log($"  {name} c{concurrency}: {level.Stats.Throughput:F1} img/s, p50 {level.Stats.P50Ms:F1} ms, p95 {level.Stats.P95Ms:F1} ms, " +
                    $"{level.BackboneImagesPerPredict:F3} backbone images per Predict, mean backbone batch {level.MeanBackboneBatch:F1}, cache hits {level.CacheHits}");
            }
        }
        result.LoadAverageEnd = MachineInfoReader.LoadAverage();
        result.Seconds = timer.Elapsed.TotalSeconds;
        foreach (var goal in result.Goals())
            log($"  {(goal.Met ? "met   " : "MISSED")} {goal.Name}: {goal.Measured} (target {goal.Target})");
        return result;
    }

    /// <summary>One phase: <paramref name="count"/> Predict calls naming <paramref name="heads"/>, each on a new image,
    /// closed loop at <paramref name="concurrency"/>; added to <paramref name="pool"/> with the backbone's runs and each
    /// process's CPU over the phase.</summary>
    private async Task MeasurePredictPhaseAsync(GraftStack stack, GraftCalls calls, string[] heads, int concurrency, int count, Pool pool)
    {
        var images = FreshImages(count);
        var before = await ReadBackboneRunsAsync(stack);
        var cpu = stack.CpuSeconds();
        var (stats, hits, latencies) = await LoadRunner.RunRecordedAsync(concurrency, count, async i =>
        {
            var reply = await calls.PredictAsync(images[i], heads);
            if (!reply.Results.Select(r => r.Head).SequenceEqual(heads))
            {
                throw new InvalidOperationException($"Predict for [{string.Join(", ", heads)}] answered [{string.Join(", ", reply.Results.Select(r => r.Head))}].");
            }
            return reply.CacheHit;
        });
        var cpuAfter = stack.CpuSeconds();
        var after = await ReadBackboneRunsAsync(stack);
        pool.Add(latencies, stats, hits, after.Images - before.Images, after.Runs - before.Runs,
            cpuAfter.ToDictionary(c => c.Key, c => c.Value - cpu.GetValueOrDefault(c.Key)));
    }

    private long _lastScrape;

    /// <summary>The backbone's images run (<c>graft_backbone_inferences_total</c>, cache hits excluded) and ONNX Runtime
    /// runs (<c>graft_backbone_batches_total</c>) so far, read at least <see cref="ScrapeCacheMargin"/> after the
    /// previous read so that the exporter's cached response cannot hide the latest calls.</summary>
    private async Task<(double Images, double Runs)> ReadBackboneRunsAsync(GraftStack stack)
    {
        var since = _lastScrape == 0 ? ScrapeCacheMargin : Stopwatch.GetElapsedTime(_lastScrape);
        if (since < ScrapeCacheMargin) await Task.Delay(ScrapeCacheMargin - since);
        // One fresh scrape; the second read, well within the cache window, sees the same snapshot.
        var images = await stack.ReadBackboneCounterAsync("graft_backbone_inferences_total");
        var runs = await stack.ReadBackboneCounterAsync("graft_backbone_batches_total");
        _lastScrape = Stopwatch.GetTimestamp();
        return (images, runs);
    }

    /// <summary>One case at one concurrency, pooled over the rounds.</summary>
    private sealed class Pool
    {
        private readonly List<double> _latencies = [];
        private readonly Dictionary<string, double> _cpuSeconds = [];
        private double _seconds, _images, _runs;
        private int _hits;

        public double LastP50Ms { get; private set; }

        public void Add(double[] latencies, LatencyStats stats, int hits, double images, double runs, Dictionary<string, double> cpuSeconds)
        {
            _latencies.AddRange(latencies);
            _seconds += stats.Seconds;
            _hits += hits;
            _images += images;
            _runs += runs;
            foreach (var (process, seconds) in cpuSeconds) _cpuSeconds[process] = _cpuSeconds.GetValueOrDefault(process) + seconds;
            LastP50Ms = stats.P50Ms;
        }

        public FineTunedPredictLevel Result(string name, string[] heads, int concurrency) => new(
            name, heads, concurrency, LatencyStats.From(_latencies, _seconds, _latencies.Count), _hits,
            // Per Predict the backbone answered by running the model (a cache hit runs nothing: a duplicate image).
            _latencies.Count > _hits ? _images / (_latencies.Count - _hits) : double.NaN, _runs > 0 ? _images / _runs : double.NaN,
            _cpuSeconds.ToDictionary(c => c.Key, c => c.Value * 1000 / _latencies.Count));
    }
}

/// <summary>The fine-tuned against frozen Predict row of one run (<c>--finetune-latency</c>, or part of the full run).
/// It carries its own machine line: <c>--finetune-latency</c> adds it to a results.json another run wrote.</summary>
public sealed class FineTunedPredictResults
{
    public required MachineInfo Machine { get; init; }
    public required string Plan { get; init; }
    public double LoadAverageEnd { get; set; }
    /// <summary>True when measured by <c>--finetune-latency</c> on its own stack, false as part of a full run.</summary>
    public bool Alone { get; set; }
    /// <summary>Wall time of the section: training both heads, warm-up and the rounds (not the stack's start).</summary>
    public double Seconds { get; set; }
    public int PerClass { get; init; }
    public int Rounds { get; init; }
    public string Backbone { get; set; } = "";
    public string CutPoint { get; set; } = "";
    public long[] CutShape { get; set; } = [];
    public long TailParameters { get; set; }
    /// <summary>Protobuf size of one backbone <c>ExtractReply</c> with the final features only, and with the cut point too.</summary>
    public long ExtractReplyBytes { get; set; }
    public long ExtractReplyWithCutBytes { get; set; }
    /// <summary>Protobuf size of the cut point's <c>CutFeatures</c> message for one image.</summary>
    public long CutFeaturesBytes { get; set; }
    public List<FineTunedPredictTraining> Training { get; } = [];
    public List<FineTunedPredictLevel> Levels { get; } = [];

    public FineTunedPredictLevel? Level(string name, int concurrency) => Levels.FirstOrDefault(l => l.Case == name && l.Concurrency == concurrency);

    public sealed record Goal(string Name, string Target, string Measured, bool Met);

    /// <summary>Issue 11: a fine-tuned head's Predict costs at most 1.5× a frozen head's end to end, and one backbone run
    /// per image however many heads of each kind.</summary>
    public List<Goal> Goals()
    {
        var goals = new List<Goal>();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (Level("frozen", 1) is { } f1 && Level("fine-tuned", 1) is { } t1)
        {
            var ratio = t1.Stats.P50Ms / f1.Stats.P50Ms;
            goals.Add(new Goal("fine-tuned head's Predict p50 at concurrency 1 vs a frozen head's", "≤ 1.50×",
                string.Format(inv, "{0:F2}× ({1:F1} / {2:F1} ms)", ratio, t1.Stats.P50Ms, f1.Stats.P50Ms), ratio <= 1.5));
        }
        if (Level("frozen", 16) is { } f16 && Level("fine-tuned", 16) is { } t16)
        {
            // Cost per image is the inverse of throughput: at most 1.5× the cost is at least 1/1.5 of the throughput.
            var cost = f16.Stats.Throughput / t16.Stats.Throughput;
            goals.Add(new Goal("fine-tuned head's Predict cost per image at concurrency 16 (frozen / fine-tuned throughput)", "≤ 1.50×",
                string.Format(inv, "{0:F2}× ({1:F1} / {2:F1} img/s)", cost, f16.Stats.Throughput, t16.Stats.Throughput), cost <= 1.5));
        }
        var both = Levels.Where(l => l.Case == "both").ToList();
        if (both.Count > 0)
        {
            goals.Add(new Goal("backbone images run per Predict image, frozen + fine-tuned head in one request", "1",
                string.Join("; ", both.Select(l => string.Format(inv, "c{0}: {1:F3}", l.Concurrency, l.BackboneImagesPerPredict))),
                both.All(l => Math.Abs(l.BackboneImagesPerPredict - 1) < 1e-9)));
        }
        return goals;
    }
}

/// <summary>One of the two heads: its depth, epochs, backbone runs per training image and times.</summary>
public sealed record FineTunedPredictTraining(string Depth, int Epochs, TrainRun Run, double TrainingSeconds);

/// <summary>One case (frozen, fine-tuned or both heads) at one concurrency, pooled over the rounds: timing, the
/// backbone's images run per Predict that missed its cache (1 = one backbone run per image) and its mean batch, CPU ms per image by process.</summary>
public sealed record FineTunedPredictLevel(
    string Case, string[] Heads, int Concurrency, LatencyStats Stats, int CacheHits,
    double BackboneImagesPerPredict, double MeanBackboneBatch, Dictionary<string, double> CpuMsPerImage);

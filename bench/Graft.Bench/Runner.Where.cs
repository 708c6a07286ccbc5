using System.Globalization;
using System.Text;
using Graft.Bench.Data;
using Graft.Bench.Hosting;
using Graft.Bench.Speed;
using Graft.V1;

namespace Graft.Bench;

/// <summary>A set of environment variables given to every service for one side of an A/B comparison.</summary>
public sealed record WhereConfig(string Name, IReadOnlyDictionary<string, string> Environment)
{
    /// <summary>Parses <c>name:KEY=value,KEY2=value2</c> (<c>name:</c> alone = the defaults).</summary>
    public static WhereConfig Parse(string text)
    {
        var (name, rest) = text.IndexOf(':') is var colon and >= 0 ? (text[..colon], text[(colon + 1)..]) : (text, "");
        var env = rest.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        return new WhereConfig(name, env);
    }
}

/// <summary>One measured level of one configuration: throughput and latency, CPU per image by process and by thread
/// name, context switches per image, and the backbone's own stage times.</summary>
public sealed record WhereLevel(string Config, string Call, int Concurrency, LatencyStats Stats,
    Dictionary<string, double> CpuMsPerImage, Dictionary<string, Dictionary<string, double>> ThreadCpuMsPerImage,
    Dictionary<string, double> SwitchesPerImage, Dictionary<string, double> StageMs, double MeanBatch);

public sealed partial class Runner
{
    private static readonly string[] StageNames = ["preprocess", "queue", "run"];

    /// <summary>Where the time goes between ONNX Runtime runs: starts one stack per configuration (all up at once),
    /// then in interleaved rounds runs Extract and Predict at each concurrency on each stack, reading CPU per process
    /// and per thread from /proc and the backbone's stage histograms. Prints and returns a Markdown report.</summary>
    public async Task<string> RunWhereAsync(IReadOnlyList<WhereConfig> configs, int rounds, int callsPerLevel, int[] concurrency)
    {
        Directory.CreateDirectory(_work);
        _train = FashionMnist.Load("train");
        _speedCursor = 20_000;
        var loadStart = MachineInfoReader.LoadAverage();
        var stacks = new List<(WhereConfig Config, GraftStack Stack, GraftCalls Calls, string[] Heads)>();
        try
        {
            foreach (var config in configs)
            {
                var work = Path.Combine(_work, "where-" + config.Name);
                Directory.CreateDirectory(work);
                var stack = await GraftStack.StartAsync(repoRoot, work, TimeSpan.FromMinutes(5), config.Environment);
                var calls = new GraftCalls(stack);
                var seed = FashionMnist.FirstPerClass(_train, 5);
                var rows = (await ExtractRowsAsync(calls, seed, null))
                    .Select(r => { var row = new V1.FeatureRow { Label = FashionMnist.Classes[r.Label].Name }; row.Features.AddRange(r.Features); return row; }).ToList();
                var spec = Spec("where-head", HeadKind.Classifier, hidden: null, epochs: 3);
                spec.BackboneFingerprint = (await calls.ExtractAsync(seed[0])).Fingerprint;
                await calls.TrainOnFeaturesAsync(spec, rows);
                string[] heads = ["where-head"];
                await WarmUpAsync(stack, calls.ExtractAsync);
                await WarmUpAsync(stack, image => calls.PredictAsync(image, heads));
                stacks.Add((config, stack, calls, heads));
                log($"where: stack '{config.Name}' up ({string.Join(", ", config.Environment.Select(e => $"{e.Key}={e.Value}"))})");
            }

            var levels = new List<WhereLevel>();
            for (var round = 0; round < rounds; round++)
            {
                foreach (var call in new[] { "Extract", "Predict" })
                {
                    foreach (var c in concurrency)
                    {
                        foreach (var (config, stack, calls, heads) in stacks)
                        {
                            var images = FreshImages(callsPerLevel * Math.Max(1, c / 4));
                            var level = await MeasureWhereAsync(config.Name, call, c, stack, images.Count,
                                call == "Extract"
                                    ? async i => (await calls.ExtractAsync(images[i])).CacheHit
                                    : async i => (await calls.PredictAsync(images[i], heads)).CacheHit);
                            levels.Add(level);
                            log($"where {config.Name} {call} c{c}: {level.Stats.Throughput:F1} img/s, p50 {level.Stats.P50Ms:F1} ms, CPU ms/img " +
                                string.Join(" ", level.CpuMsPerImage.Select(p => $"{p.Key} {p.Value:F1}")) + ", stages " +
                                string.Join(" ", level.StageMs.Select(p => $"{p.Key} {p.Value:F2}")) + $", batch {level.MeanBatch:F1}");
                        }
                    }
                }
            }
            var report = RenderWhere(levels, configs, loadStart, MachineInfoReader.LoadAverage());
            return report;
        }
        finally
        {
            foreach (var s in stacks) await s.Stack.DisposeAsync();
        }
    }

    private static async Task<WhereLevel> MeasureWhereAsync(string config, string call, int concurrency, GraftStack stack, int requests, Func<int, Task<bool>> send)
    {
        var pids = stack.ProcessIds.Append(new KeyValuePair<string, int>("bench client", Environment.ProcessId)).ToList();
        var stagesBefore = await ReadStagesAsync(stack);
        var before = pids.ToDictionary(p => p.Key, p => ThreadCpuSnapshot.Read(p.Value));
        var (stats, _) = await LoadRunner.RunAsync(concurrency, requests, send);
        var after = pids.ToDictionary(p => p.Key, p => ThreadCpuSnapshot.Read(p.Value));
        var stagesAfter = await ReadStagesAsync(stack);
        var cpu = new Dictionary<string, double>();
        var threads = new Dictionary<string, Dictionary<string, double>>();
        var switches = new Dictionary<string, double>();
        foreach (var (name, _) in pids)
        {
            if (before[name] is not { } b || after[name] is not { } a) continue;
            cpu[name] = (a.ProcessCpuMs - b.ProcessCpuMs) / requests;
            threads[name] = a.ByNameSince(b).ToDictionary(p => p.Key, p => p.Value / requests);
            switches[name] = (a.VoluntarySwitches + a.InvoluntarySwitches - b.VoluntarySwitches - b.InvoluntarySwitches) / (double)requests;
        }
        var stageMs = StageMeansMs(stagesBefore, stagesAfter);
        var runs = stagesAfter.GetValueOrDefault("run_count") - stagesBefore.GetValueOrDefault("run_count");
        var queued = stagesAfter.GetValueOrDefault("queue_count") - stagesBefore.GetValueOrDefault("queue_count");
        return new WhereLevel(config, call, concurrency, stats, cpu, threads, switches, stageMs, runs > 0 ? queued / runs : double.NaN);
    }

    /// <summary>Mean ms per stage between two readings of <see cref="ReadStagesAsync"/> (NaN for a stage with no sample).</summary>
    private static Dictionary<string, double> StageMeansMs(Dictionary<string, double> before, Dictionary<string, double> after)
    {
        var stageMs = new Dictionary<string, double>();
        foreach (var stage in StageNames)
        {
            var count = after.GetValueOrDefault(stage + "_count") - before.GetValueOrDefault(stage + "_count");
            var sum = after.GetValueOrDefault(stage + "_sum") - before.GetValueOrDefault(stage + "_sum");
            stageMs[stage] = count > 0 ? sum * 1000 / count : double.NaN;
        }
        return stageMs;
    }

    /// <summary>The backbone's stage histogram sums and counts, e.g. <c>run_sum</c> (seconds) and <c>run_count</c>.</summary>
    private static async Task<Dictionary<string, double>> ReadStagesAsync(GraftStack stack)
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{stack.BackboneHttpPort}/metrics");
        var result = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("graft_backbone_stage_duration_seconds_", StringComparison.Ordinal)) continue;
            var suffix = line["graft_backbone_stage_duration_seconds_".Length..].Split('{')[0];
            if (suffix is not ("sum" or "count")) continue;
            var stageAt = line.IndexOf("stage=\"", StringComparison.Ordinal);
            if (stageAt < 0) continue;
            var stage = line[(stageAt + 7)..line.IndexOf('"', stageAt + 7)];
            var value = line[(line.IndexOf('}') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            result[$"{stage}_{suffix}"] = double.Parse(value, CultureInfo.InvariantCulture);
        }
        return result;
    }

    private static string RenderWhere(List<WhereLevel> levels, IReadOnlyList<WhereConfig> configs, double loadStart, double loadEnd)
    {
        var md = new StringBuilder();
        md.AppendLine($"# Where the time goes ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average {loadStart:F2} → {loadEnd:F2} on {Environment.ProcessorCount} cores)");
        md.AppendLine();
        foreach (var config in configs)
        {
            md.AppendLine($"- **{config.Name}**: {(config.Environment.Count == 0 ? "defaults" : string.Join(", ", config.Environment.Select(e => $"`{e.Key}={e.Value}`")))}");
        }
        md.AppendLine();
        md.AppendLine("Every number is the median over the interleaved rounds. CPU in ms per image (user + system, /proc); stages are the backbone's own histograms (preprocess and queue per input, run per batch).");
        md.AppendLine();
        md.AppendLine("| call | c | config | img/s | p50 ms | Backbone CPU | Heads CPU | Gateway CPU | client CPU | Backbone ctx sw/img | preprocess ms | queue ms | run ms | batch |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var group in levels.GroupBy(l => (l.Call, l.Concurrency, l.Config)))
        {
            var g = group.ToList();
            double Med(Func<WhereLevel, double> f)
            {
                var v = g.Select(f).Order().ToArray();
                return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
            }
            md.AppendLine($"| {group.Key.Call} | {group.Key.Concurrency} | {group.Key.Config} | {Med(l => l.Stats.Throughput):F1} | {Med(l => l.Stats.P50Ms):F1} | " +
                $"{Med(l => l.CpuMsPerImage.GetValueOrDefault("BackboneService")):F1} | {Med(l => l.CpuMsPerImage.GetValueOrDefault("HeadService")):F1} | " +
                $"{Med(l => l.CpuMsPerImage.GetValueOrDefault("Gateway")):F1} | {Med(l => l.CpuMsPerImage.GetValueOrDefault("bench client")):F1} | " +
                $"{Med(l => l.SwitchesPerImage.GetValueOrDefault("BackboneService")):F1} | {Med(l => l.StageMs["preprocess"]):F2} | {Med(l => l.StageMs["queue"]):F2} | {Med(l => l.StageMs["run"]):F2} | {Med(l => l.MeanBatch):F1} |");
        }
        md.AppendLine();
        md.AppendLine("CPU ms per image by thread name (summed over the rounds' levels, divided by their images; top 6 per process):");
        md.AppendLine();
        foreach (var group in levels.GroupBy(l => (l.Call, l.Concurrency, l.Config)))
        {
            md.AppendLine($"- {group.Key.Call} c{group.Key.Concurrency} {group.Key.Config}:");
            foreach (var process in new[] { "BackboneService", "HeadService", "Gateway" })
            {
                var sums = new Dictionary<string, double>();
                foreach (var level in group)
                {
                    foreach (var (name, ms) in level.ThreadCpuMsPerImage.GetValueOrDefault(process) ?? []) sums[name] = sums.GetValueOrDefault(name) + ms / group.Count();
                }
                md.AppendLine($"  - {process}: " + string.Join(", ", sums.OrderByDescending(p => p.Value).Take(6).Select(p => $"{p.Key} {p.Value:F2}")));
            }
        }
        return md.ToString();
    }
}

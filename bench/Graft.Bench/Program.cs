// Graft benchmark: speed against raw ONNX Runtime and ML.NET, transfer quality on Fashion-MNIST.
//   bench/run.sh                 the full run; writes bench/RESULTS.md and the plots
//   bench/run.sh --quick         a smoke test with tiny counts; writes to bench/out/quick/
//   bench/run.sh --no-services   only what needs no Graft service (raw ORT, ML.NET pipeline, CNN, raw int8 and its accuracy)
//   bench/run.sh --no-int8       skip the int8 backbone's rows
//   bench/run.sh --paired DIR    add the paired (interleaved) measurement of the throughput goals to DIR/results.json
//   bench/run.sh --render DIR    re-render RESULTS.md and the plots from DIR/results.json, measuring nothing
//   bench/run.sh --where A B     where the time goes between ONNX Runtime runs: CPU per process and thread, backbone
//                                stages, for stacks started with each configuration (name:ENV=value,...), interleaved
//   bench/run.sh --finetune-curve [--report-only]   issue 11's depth/accuracy curve, in process; adds its section to bench/RESULTS.md
//   bench/run.sh --finetune-latency   issue 11's fine-tuned vs frozen Predict row alone; adds it to bench/results.json and RESULTS.md
using System.Text.Json;
using System.Text.Json.Serialization;
using Graft.Bench;
using Graft.Bench.Report;

var quick = args.Contains("--quick");
var withServices = !args.Contains("--no-services");
var repoRoot = FindRepoRoot();
var benchDir = Path.Combine(repoRoot, "bench");
var outDir = quick ? Path.Combine(benchDir, "out", "quick") : benchDir;
Directory.CreateDirectory(outDir);

var json = new JsonSerializerOptions { WriteIndented = true, PreferredObjectCreationHandling = JsonObjectCreationHandling.Populate };
var renderIndex = Array.IndexOf(args, "--render");
if (renderIndex >= 0)
{
    var dir = Path.GetFullPath(args[renderIndex + 1]);
    var saved = JsonSerializer.Deserialize<Results>(File.ReadAllText(Path.Combine(dir, "results.json")), json)!;
    File.WriteAllText(Path.Combine(dir, "RESULTS.md"), ResultsWriter.Render(saved, Plots.Write(saved, dir)));
    Console.WriteLine($"re-rendered {Path.Combine(dir, "RESULTS.md")}");
    return;
}

if (args.Contains("--finetune-curve"))
{
    // Issue 11's depth/accuracy curve, in process (BackboneService's model + HeadService's training code); resumable:
    // bench/out/curve/curve.json keeps every point measured, and the features stay cached in bench/out/curve/features.
    var curveLog = (string line) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}");
    var curveDir = Path.Combine(benchDir, "out", quick ? "curve-quick" : "curve");
    // --report-only writes the section from what bench/out/curve/curve.json holds, measuring nothing.
    var curveRunner = new Graft.Bench.Quality.FineTuneCurve(curveDir, curveLog, testImages: quick ? 200 : 2000);
    var curve = args.Contains("--report-only") ? curveRunner.Load() : curveRunner.Run(Graft.Bench.Quality.FineTuneCurve.TriedChoices);
    var resultsPath = Path.Combine(benchDir, "results.json");
    if (!quick && File.Exists(resultsPath))
    {
        var saved = JsonSerializer.Deserialize<Results>(File.ReadAllText(resultsPath), json)!;
        saved.FineTune = curve;
        File.WriteAllText(resultsPath, JsonSerializer.Serialize(saved, json));
        // The rest of RESULTS.md stays as that run wrote it; only the fine-tuning section is (re)written.
        var resultsMd = Path.Combine(benchDir, "RESULTS.md");
        File.WriteAllText(resultsMd, ResultsWriter.SpliceFineTune(File.ReadAllText(resultsMd), curve));
        Console.WriteLine($"added the fine-tuning curve to {Path.Combine(benchDir, "RESULTS.md")}");
    }
    return;
}

if (args.Contains("--finetune-latency"))
{
    // Issue 11's fine-tuned vs frozen Predict row (section 4b) on its own stack, added to the run in outDir (bench/, or
    // bench/out/quick/ with --quick): results.json gets only its FineTunedPredict property, RESULTS.md only its section.
    var latencyRunner = new Runner(quick ? BenchPlan.Quick : BenchPlan.Full, repoRoot, Path.Combine(benchDir, "out"), true,
        line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"));
    var row = await latencyRunner.RunFineTunedPredictAloneAsync();
    var resultsPath = Path.Combine(outDir, "results.json");
    var resultsMd = Path.Combine(outDir, "RESULTS.md");
    if (File.Exists(resultsPath))
    {
        // As --finetune-curve does: only this row changes in results.json, and only its section in RESULTS.md.
        var saved = JsonSerializer.Deserialize<Results>(File.ReadAllText(resultsPath), json)!;
        saved.FineTunedPredict = row;
        File.WriteAllText(resultsPath, JsonSerializer.Serialize(saved, json));
        File.WriteAllText(resultsMd, File.Exists(resultsMd)
            ? ResultsWriter.SpliceFineTunedPredict(File.ReadAllText(resultsMd), row)
            : ResultsWriter.Render(saved, Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).OfType<string>().ToList()));
    }
    else
    {
        // No earlier run here: a results file holding this row alone, every other row pending.
        var fresh = new Results { Machine = row.Machine, Plan = row.Plan, LoadAverageEnd = row.LoadAverageEnd, FineTunedPredict = row };
        fresh.Pending.Add("Every row but 4b: these results were written by `bench/run.sh --finetune-latency` alone; a full run measures the rest.");
        File.WriteAllText(resultsPath, JsonSerializer.Serialize(fresh, json));
        File.WriteAllText(resultsMd, ResultsWriter.Render(fresh, []));
    }
    Console.WriteLine($"added the fine-tuned vs frozen Predict row to {resultsMd} and {resultsPath}");
    return;
}

var pairedIndex = Array.IndexOf(args, "--paired");
if (pairedIndex >= 0)
{
    // Adds the paired measurement to an existing run's results.json and re-renders it.
    var dir = Path.GetFullPath(args[pairedIndex + 1]);
    var saved = JsonSerializer.Deserialize<Results>(File.ReadAllText(Path.Combine(dir, "results.json")), json)!;
    var pairedRunner = new Runner(quick ? BenchPlan.Quick : BenchPlan.Full, repoRoot, Path.Combine(benchDir, "out"), true,
        line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"));
    await pairedRunner.RunPairedAsync(saved, rounds: quick ? 2 : 5, imagesPerRound: quick ? 16 : 64);
    File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(saved, json));
    File.WriteAllText(Path.Combine(dir, "RESULTS.md"), ResultsWriter.Render(saved, Plots.Write(saved, dir)));
    Console.WriteLine($"added the paired measurement to {Path.Combine(dir, "RESULTS.md")}");
    return;
}

if (Array.IndexOf(args, "--where") is var whereIndex and >= 0)
{
    // Where the time goes between ONNX Runtime runs, A/B: --where "a:" "b:DOTNET_X=0,Graft__Backbone__Sessions=2" [--rounds 3] [--calls 40]
    var configs = args.Skip(whereIndex + 1).TakeWhile(a => !a.StartsWith("--", StringComparison.Ordinal)).Select(WhereConfig.Parse).ToList();
    if (configs.Count == 0) configs.Add(WhereConfig.Parse("defaults:"));
    int Arg(string name, int fallback) => Array.IndexOf(args, name) is var at and >= 0 ? int.Parse(args[at + 1]) : fallback;
    var whereRunner = new Runner(BenchPlan.Full, repoRoot, Path.Combine(benchDir, "out"), true, line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"));
    var report = await whereRunner.RunWhereAsync(configs, Arg("--rounds", 3), Arg("--calls", 40), quick ? [1, 16] : [1, 4, 16]);
    var whereDir = Path.Combine(benchDir, "out", "where");
    Directory.CreateDirectory(whereDir);
    File.WriteAllText(Path.Combine(whereDir, "WHERE.md"), report);
    Console.WriteLine(report);
    return;
}

if (Array.IndexOf(args, "--rescore-mlnet") is var rescoreIndex and >= 0)
{
    // Re-runs the ML.NET trainers on the features a run saved (bench/out/work) and re-renders that run's results.
    var dir = Path.GetFullPath(args[rescoreIndex + 1]);
    var saved = JsonSerializer.Deserialize<Results>(File.ReadAllText(Path.Combine(dir, "results.json")), json)!;
    new Runner(quick ? BenchPlan.Quick : BenchPlan.Full, repoRoot, Path.Combine(benchDir, "out"), false,
        line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}")).RescoreMlNet(saved);
    File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(saved, json));
    File.WriteAllText(Path.Combine(dir, "RESULTS.md"), ResultsWriter.Render(saved, Plots.Write(saved, dir)));
    Console.WriteLine($"re-scored ML.NET in {Path.Combine(dir, "RESULTS.md")}");
    return;
}

var runner = new Runner(quick ? BenchPlan.Quick : BenchPlan.Full, repoRoot, Path.Combine(benchDir, "out"), withServices,
    line => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}"), withInt8: !args.Contains("--no-int8"));
var results = await runner.RunAsync();

var plots = Plots.Write(results, outDir);
File.WriteAllText(Path.Combine(outDir, "RESULTS.md"), ResultsWriter.Render(results, plots));
File.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(results, json));
Console.WriteLine($"wrote {Path.Combine(outDir, "RESULTS.md")} and {plots.Count} plots");
foreach (var goal in ResultsWriter.Goals(results))
    Console.WriteLine($"  {(goal.Met switch { true => "met   ", false => "MISSED", null => "pending" })} {goal.Name}: {goal.Measured} (target {goal.Target})");

static string FindRepoRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Services.sln"))) return dir.FullName;
    }
    return Directory.GetCurrentDirectory();
}

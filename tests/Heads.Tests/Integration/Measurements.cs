using System.Diagnostics;
using Graft.Heads.Tests.Support;
using Graft.Heads.Training;
using Graft.V1;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace Graft.Heads.Tests.Integration;

/// <summary>A fact that runs only when GRAFT_HEADS_MEASURE=1: measurements, not assertions on speed.</summary>
public sealed class MeasureFactAttribute : FactAttribute
{
    public MeasureFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("GRAFT_HEADS_MEASURE") != "1")
        {
            Skip = "Measurement; run with GRAFT_HEADS_MEASURE=1.";
        }
    }
}

/// <summary>The numbers for the issue note. Run: GRAFT_HEADS_MEASURE=1 dotnet test tests/Heads.Tests --filter Measurements
/// --logger "console;verbosity=detailed".</summary>
public sealed class Measurements(ITestOutputHelper output)
{
    [MeasureFact]
    public void Training_time_for_1000_rows_of_512_features_for_30_epochs()
    {
        var trainer = new HeadTrainer(Options.Create(new HeadOptions()));
        foreach (var kind in new[] { HeadKind.Classifier, HeadKind.Regressor })
        {
            var settings = TrainingSettings.FromSpec(new HeadSpec { Name = "m", Kind = kind, BackboneFingerprint = "f", Epochs = 30 }, new HeadOptions());
            var rows = kind == HeadKind.Classifier ? Synthetic.Classified(1000, 512, 10) : Synthetic.Regressed(1000, 512);
            var data = Tiny.Set(settings, rows);
            trainer.Train(settings, data, null, CancellationToken.None); // warm-up
            var times = new List<double>();
            for (var i = 0; i < 3; i++)
            {
                var clock = Stopwatch.StartNew();
                trainer.Train(settings, data, null, CancellationToken.None);
                times.Add(clock.Elapsed.TotalSeconds);
            }
            output.WriteLine($"{kind}: 1000 rows x 512 features x 30 epochs (hidden 256, batch 32, 20% validation, {new HeadOptions().EffectiveTrainingThreads} torch thread(s)): " +
                $"median {times.Order().ElementAt(1):F2} s (runs {string.Join(", ", times.Select(t => t.ToString("F2")))})");
        }
    }

    [MeasureFact]
    public async Task Predict_latency_for_one_head_against_ten_heads_on_one_vector()
    {
        using var dir = new TempRegistry();
        await using var host = new HeadsHost(dir.Path);
        var names = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var kind = i % 2 == 0 ? HeadKind.Classifier : HeadKind.Regressor;
            var rows = kind == HeadKind.Classifier ? Synthetic.Classified(100, 512, 10, i) : Synthetic.Regressed(100, 512, i);
            await host.Client.TrainPublishedAsync(TrainCalls.Spec($"head-{i}", kind, Tiny.Fingerprint, epochs: 2), rows);
            names.Add($"head-{i}");
        }
        var vector = Synthetic.Vector(512);
        var one = TrainCalls.Request(Tiny.Fingerprint, vector, names[0]);
        var ten = TrainCalls.Request(Tiny.Fingerprint, vector, [.. names]);
        for (var i = 0; i < 50; i++)
        {
            await host.Client.PredictAsync(one);
            await host.Client.PredictAsync(ten);
        }
        var oneTimes = new List<double>();
        var tenTimes = new List<double>();
        for (var i = 0; i < 500; i++)
        {
            var clock = Stopwatch.StartNew();
            await host.Client.PredictAsync(one);
            oneTimes.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
            await host.Client.PredictAsync(ten);
            tenTimes.Add(clock.Elapsed.TotalMilliseconds);
        }
        static string Summary(List<double> t) => $"median {Percentile(t, 0.5):F3} ms, p95 {Percentile(t, 0.95):F3} ms";
        output.WriteLine($"Predict over in-process gRPC, 512 features, heads 512-256-(1|10): 1 head {Summary(oneTimes)}; 10 heads {Summary(tenTimes)}; ratio of medians {Percentile(tenTimes, 0.5) / Percentile(oneTimes, 0.5):F2}");
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Min(sorted.Count - 1, Math.Round(p * (sorted.Count - 1)))];
    }
}

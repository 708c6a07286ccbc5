using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Graft.Bench.Data;

namespace Graft.Bench.Peers;

/// <summary>Runs the ML.NET baseline (bench/MlNetBaseline, its own process because it needs SkiaSharp 2.88) and reads its JSON.</summary>
public sealed class MlNetProcess(string dllPath, string workDirectory)
{
    public sealed record PipelineResult(int Images, double Seconds, double ImagesPerSecond, double WarmupSeconds, int FeatureDimension);

    public sealed record TrainerResult(int TrainRows, int TestRows, int Dimension, double ClassifierAccuracy,
        double ClassifierTrainSeconds, double RegressorMae, double RegressorTrainSeconds, double PredictedClassMeanMae);

    /// <summary>Writes the images as PNG files (as ML.NET's LoadImages wants them) with an index, and times the pipeline.</summary>
    public PipelineResult RunPipeline(IReadOnlyList<FashionImage> images, IReadOnlyList<double> lengths, string? featuresOut = null)
    {
        var dir = Path.Combine(workDirectory, "mlnet-images");
        Directory.CreateDirectory(dir);
        var index = new List<string>(images.Count);
        for (var i = 0; i < images.Count; i++)
        {
            var name = $"{images[i].Index:D5}.png";
            File.WriteAllBytes(Path.Combine(dir, name), images[i].Png);
            index.Add(string.Create(CultureInfo.InvariantCulture, $"{name}\t{images[i].Label}\t{lengths[i]}"));
        }
        File.WriteAllLines(Path.Combine(dir, "images.tsv"), index);
        var args = new List<string> { "pipeline", "--images", dir, "--count", images.Count.ToString(CultureInfo.InvariantCulture) };
        if (featuresOut is not null) args.AddRange(["--features-out", featuresOut]);
        return Run<PipelineResult>(args);
    }

    public TrainerResult RunTrainers(string trainFeatures, string testFeatures) =>
        Run<TrainerResult>(["train", "--train", trainFeatures, "--test", testFeatures]);

    private T Run<T>(List<string> args)
    {
        var outPath = Path.Combine(workDirectory, $"mlnet-{args[0]}.json");
        File.Delete(outPath);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        start.ArgumentList.Add(dllPath);
        foreach (var a in args) start.ArgumentList.Add(a);
        start.ArgumentList.Add("--out");
        start.ArgumentList.Add(outPath);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the ML.NET baseline.");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0 || !File.Exists(outPath))
        {
            throw new InvalidOperationException($"ML.NET baseline '{args[0]}' failed (exit {process.ExitCode}): {stderr.Result}{stdout.Result}");
        }
        return JsonSerializer.Deserialize<T>(File.ReadAllText(outPath))!;
    }
}

using System.Globalization;
using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Onnx;

namespace Graft.Backbone.Quantization;

/// <summary><c>Graft.BackboneService quantize ...</c> (what <c>graft backbone quantize</c> runs): quantizes a profile's
/// cut model to int8 and writes it, without starting the service.</summary>
public static class QuantizeTool
{
    public const string Usage =
        "quantize [--profile NAME] [--model FILE.onnx] [--calibration DIR] [--images N] [--method percentile|minmax] [--percentile P] [--out FILE.onnx]";

    /// <summary>Runs the tool; returns the process exit code (0 done, 2 bad arguments or inputs).</summary>
    public static int Run(string[] args)
    {
        try
        {
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                    throw new ArgumentException($"Unexpected argument '{args[i]}'. Usage: {Usage}");
                values[args[i][2..]] = args[++i];
            }
            var unknown = values.Keys.Except(["profile", "model", "calibration", "images", "method", "percentile", "out"]).ToList();
            if (unknown.Count > 0) throw new ArgumentException($"Unknown option --{unknown[0]}. Usage: {Usage}");

            var options = new BackboneOptions { Profile = values.GetValueOrDefault("profile", BackboneProfiles.ResNet18Name), ModelPath = values.GetValueOrDefault("model") };
            var profile = BackboneProfiles.Resolve(options, AppContext.BaseDirectory);
            var settings = profile.Quantization ?? new QuantizationSettings();
            if (values.TryGetValue("images", out var images)) settings.CalibrationImages = PositiveInt(images, "--images");
            if (values.TryGetValue("method", out var method))
            {
                settings.Method = method.ToLowerInvariant() switch
                {
                    "percentile" => CalibrationMethod.Percentile,
                    "minmax" => CalibrationMethod.MinMax,
                    _ => throw new ArgumentException($"--method '{method}' is not one of percentile, minmax."),
                };
            }
            if (values.TryGetValue("percentile", out var percentile))
            {
                settings.Percentile = double.TryParse(percentile, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) && p is > 90 and <= 100
                    ? p : throw new ArgumentException($"--percentile '{percentile}' must be a number in (90, 100], e.g. 99.999.");
            }
            var calibration = Path.GetFullPath(values.GetValueOrDefault("calibration") ?? Path.Combine(AppContext.BaseDirectory, "calibration"));
            var output = Path.GetFullPath(values.GetValueOrDefault("out") ?? $"{profile.Name.Replace("-int8", "", StringComparison.Ordinal)}-int8.onnx");

            var preprocessor = Preprocessor.Create(profile, 40_000_000);
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(profile.ModelPath));
            var cut = GraphCutter.Cut(model, profile.CutTensor);
            var inputName = profile.InputName is { Length: > 0 } named ? named
                : model.Graph.Input.Select(i => i.Name).Except(model.Graph.Initializer.Select(t => t.Name)).Single();
            var files = QuantizedModelStore.CalibrationFiles(calibration, settings.CalibrationImages);
            Console.WriteLine($"Quantizing {profile.Name} (cut at {cut.CutTensor}) on {files.Count} calibration images from {calibration} ({settings})...");
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var inputs = files.Select(f => preprocessor.Preprocess(File.ReadAllBytes(f))).ToList();
            var (quantized, report) = Int8Quantizer.Quantize(model, inputName, [3, profile.InputHeight, profile.InputWidth], inputs, settings);
            var bytes = quantized.ToByteArray();
            File.WriteAllBytes(output, bytes);
            Console.WriteLine(report.ToString());
            Console.WriteLine($"Wrote {output} ({bytes.Length / 1048576.0:F1} MB, fp32 cut model {model.CalculateSize() / 1048576.0:F1} MB) in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s.");
            Console.WriteLine("Serve it with Graft__Backbone__Profile=resnet18-int8 (quantizes and caches itself at start-up), or as any model: Graft__Backbone__ModelPath=" + output);
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InputRejectedException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    private static int PositiveInt(string value, string name) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{name} '{value}' must be a positive whole number.");
}

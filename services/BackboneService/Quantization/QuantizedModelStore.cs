using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Onnx;

namespace Graft.Backbone.Quantization;

/// <summary>Quantizes a cut fp32 model once and keeps the result on disk, keyed by the hash of the fp32 graph, the
/// settings and the calibration images: a restart loads it in a moment, and any change quantizes afresh.</summary>
public sealed class QuantizedModelStore(string cacheDirectory, string calibrationDirectory, Preprocessor preprocessor, ILogger logger)
{
    /// <summary>Image files taken for calibration (others in the folder are ignored).</summary>
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"];

    /// <summary>The quantized model and its precision line; quantizes (and stores) it when the cache has no entry.</summary>
    public (ModelProto Model, string Precision) GetOrCreate(ModelProto cut, string inputName, BackboneProfile profile)
    {
        var settings = profile.Quantization ?? new QuantizationSettings();
        var images = CalibrationFiles(calibrationDirectory, settings.CalibrationImages);
        var fp32 = cut.ToByteArray();
        var key = Key(fp32, settings, images);
        var path = Path.Combine(cacheDirectory, $"{profile.Name}-{key}.onnx");
        var reportPath = Path.ChangeExtension(path, ".txt");
        if (File.Exists(path) && File.Exists(reportPath))
        {
            Log.QuantizedFromCache(logger, path);
            return (ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)), File.ReadAllText(reportPath).Trim());
        }

        Log.Quantizing(logger, profile.Name, images.Count, calibrationDirectory, settings.ToString());
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var inputs = images.Select(f => preprocessor.Preprocess(File.ReadAllBytes(f))).ToList();
        var (model, report) = Int8Quantizer.Quantize(cut, inputName, [3, profile.InputHeight, profile.InputWidth], inputs, settings);
        Directory.CreateDirectory(cacheDirectory);
        // Written beside, then moved: a crash mid-write never leaves a truncated model under the real name.
        var temporary = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllBytes(temporary, model.ToByteArray());
        File.WriteAllText(reportPath, report.ToString());
        File.Move(temporary, path, overwrite: true);
        Log.Quantized(logger, report.ToString(), System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, path);
        return (model, report.ToString());
    }

    /// <summary>Up to <paramref name="count"/> images from the folder (recursively): shared out evenly between its
    /// sub-folders (e.g. fashion/ and photos/), and within each spread evenly over the sorted list so every class contributes.</summary>
    /// <exception cref="InvalidOperationException">The folder is missing or holds no image.</exception>
    public static IReadOnlyList<string> CalibrationFiles(string directory, int count)
    {
        if (!Directory.Exists(directory))
        {
            throw new InvalidOperationException(
                $"The calibration folder '{directory}' does not exist; set Graft:Backbone:CalibrationDirectory to a folder of images like the ones you will serve.");
        }
        var files = Directory.GetFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => ImageExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0)
        {
            throw new InvalidOperationException($"The calibration folder '{directory}' holds no image ({string.Join(", ", ImageExtensions)}); set Graft:Backbone:CalibrationDirectory.");
        }
        if (files.Count <= count) return files;
        var groups = files.GroupBy(f => Path.GetRelativePath(directory, f).Split(Path.DirectorySeparatorChar)[0]).Select(g => g.ToList()).ToList();
        var quota = new int[groups.Count];
        for (var left = count; left > 0;)
        {
            for (var g = 0; g < groups.Count && left > 0; g++)
            {
                if (quota[g] < groups[g].Count) { quota[g]++; left--; }
            }
        }
        return groups.SelectMany((g, i) => Enumerable.Range(0, quota[i]).Select(k => g[(int)((long)k * g.Count / quota[i])])).ToList();
    }

    private static string Key(byte[] fp32, QuantizationSettings settings, IReadOnlyList<string> images)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(fp32);
        sha.AppendData(Encoding.UTF8.GetBytes($"\n{settings}\n{settings.CalibrationImages}\nquantizer v1\n"));
        foreach (var image in images) sha.AppendData(File.ReadAllBytes(image));
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }
}

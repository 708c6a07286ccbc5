using System.Diagnostics;
using Graft.Bench.Shared;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Graft.Bench.MlNet;

/// <summary>Images per second of ML.NET's documented transfer-learning featurization, end to end from image files.</summary>
internal static class PipelineBaseline
{
    private sealed class ImageRow
    {
        public string ImagePath { get; set; } = "";
        public int Label { get; set; }
        public float Length { get; set; }
    }

    private sealed class FeaturesRow
    {
        [VectorType(512)]
        public float[] Features { get; set; } = [];
        public int Label { get; set; }
        public float Length { get; set; }
    }

    public sealed record Result(int Images, double Seconds, double ImagesPerSecond, double WarmupSeconds, int FeatureDimension);

    /// <summary>
    /// Featurizes the first <paramref name="count"/> files listed in <c>images.tsv</c> (path, label, length) under
    /// <paramref name="imagesDir"/>. Steady state: the pipeline is built, run once over the whole set untimed (JIT
    /// tiering, ORT's first-run planning, the image loader's buffers), then timed over the whole set again.
    /// </summary>
    public static Result Run(string imagesDir, int count, string? featuresOut)
    {
        var rows = File.ReadLines(Path.Combine(imagesDir, "images.tsv"))
            .Select(line => line.Split('\t'))
            .Select(p => new ImageRow { ImagePath = p[0], Label = int.Parse(p[1]), Length = float.Parse(p[2], System.Globalization.CultureInfo.InvariantCulture) })
            .Take(count)
            .ToList();
        var ml = new MLContext(seed: 1);
        var pipeline = ml.Transforms.LoadImages("Image", imagesDir, nameof(ImageRow.ImagePath))
            .Append(ml.Transforms.ResizeImages("Image", ImageWidth, ImageHeight, "Image"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image"))
            .Append(ml.Transforms.DnnFeaturizeImage("Features",
                m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"));

        var warmup = Stopwatch.StartNew();
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(rows.Take(4)));
        Drain(ml, model.Transform(ml.Data.LoadFromEnumerable(rows)));
        warmup.Stop();

        var timer = Stopwatch.StartNew();
        var features = Drain(ml, model.Transform(ml.Data.LoadFromEnumerable(rows)));
        timer.Stop();

        if (featuresOut is not null)
        {
            FeatureFile.Write(featuresOut, features.Select(f => new FeatureRow(f.Label, f.Length, f.Features)).ToList());
        }
        return new Result(features.Count, timer.Elapsed.TotalSeconds, features.Count / timer.Elapsed.TotalSeconds,
            warmup.Elapsed.TotalSeconds, features.Count == 0 ? 0 : features[0].Features.Length);
    }

    private const int ImageWidth = 224, ImageHeight = 224;

    // IDataView is lazy: the images are only loaded and featurized when the rows are read.
    private static List<FeaturesRow> Drain(MLContext ml, IDataView view) =>
        ml.Data.CreateEnumerable<FeaturesRow>(view, reuseRowObject: false).ToList();
}

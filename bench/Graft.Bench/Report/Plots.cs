using ScottPlot;

namespace Graft.Bench.Report;

/// <summary>The PNG plots beside RESULTS.md (ScottPlot 5).</summary>
public static class Plots
{
    public const string Throughput = "throughput.png";
    public const string Latency = "latency.png";
    public const string HeadTraining = "head-training.png";
    public const string Curve = "accuracy-curve.png";

    // SkiaSharp's NoDependencies natives have no fontconfig, so a font is registered by file; without one, text is blank.
    private static readonly string[] FontFiles =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    ];

    private const string FontName = "Graft Bench Sans";

    /// <summary>Writes every plot the results have data for; returns the file names written.</summary>
    public static List<string> Write(Results r, string directory)
    {
        var font = FontFiles.FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException("No font for the plots. Install one with: sudo apt-get install fonts-dejavu-core");
        Fonts.AddFontFile(FontName, font);
        // Titles and axis labels are bold: without a bold face registered they would be blank.
        var bold = font.Replace(".ttf", "-Bold.ttf", StringComparison.Ordinal).Replace("-Regular-Bold", "-Bold", StringComparison.Ordinal);
        Fonts.AddFontFile(FontName, File.Exists(bold) ? bold : font, bold: true);
        Fonts.Default = FontName;
        var written = new List<string>();
        if (WriteThroughput(r, Path.Combine(directory, Throughput))) written.Add(Throughput);
        if (WriteLatency(r, Path.Combine(directory, Latency))) written.Add(Latency);
        if (WriteHeadTraining(r, Path.Combine(directory, HeadTraining))) written.Add(HeadTraining);
        if (WriteCurve(r, Path.Combine(directory, Curve))) written.Add(Curve);
        return written;
    }

    private static bool WriteThroughput(Results r, string path)
    {
        var items = new List<(string Label, double Value)>();
        if (r.RawOrt1Baseline is { } b1) items.Add(("raw ORT b1", b1));
        if (r.RawOrt16Baseline is { } b16) items.Add(("raw ORT b16", b16));
        if (r.MlNet is { } ml) items.Add(("ML.NET", ml.ImagesPerSecond));
        items.AddRange(r.Extract.Select(e => ($"Extract c{e.Concurrency}", e.Stats.Throughput)));
        items.AddRange(r.Predict.Select(e => ($"Predict c{e.Concurrency}", e.Stats.Throughput)));
        if (items.Count == 0) return false;

        var plot = new Plot();
        var bars = plot.Add.Bars(items.Select((_, i) => (double)i).ToArray(), items.Select(i => i.Value).ToArray());
        foreach (var bar in bars.Bars) bar.Label = bar.Value.ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        bars.ValueLabelStyle.FontSize = 11;
        plot.Axes.Bottom.SetTicks(items.Select((_, i) => (double)i).ToArray(), items.Select(i => i.Label).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = -35;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        plot.Axes.Bottom.MinimumSize = 90;
        plot.Axes.Margins(bottom: 0, top: 0.15);
        plot.Title("Images per second (higher is better)");
        plot.YLabel("images / s");
        plot.SavePng(path, 1000, 560);
        return true;
    }

    private static bool WriteLatency(Results r, string path)
    {
        if (r.Extract.Count == 0 && r.Predict.Count == 0) return false;
        var plot = new Plot();
        foreach (var (name, levels) in new[] { ("Extract", r.Extract), ("Predict", r.Predict) })
        {
            if (levels.Count == 0) continue;
            var xs = levels.Select(l => (double)l.Concurrency).ToArray();
            foreach (var (p, select) in new (string, Func<LevelResult, double>)[] { ("p50", l => l.Stats.P50Ms), ("p95", l => l.Stats.P95Ms), ("p99", l => l.Stats.P99Ms) })
            {
                var line = plot.Add.Scatter(xs, levels.Select(select).ToArray());
                line.LegendText = $"{name} {p}";
                line.LinePattern = name == "Extract" ? LinePattern.Solid : LinePattern.Dashed;
            }
        }
        plot.Title("Latency against concurrency (lower is better)");
        plot.XLabel("concurrent callers");
        plot.YLabel("ms");
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(path, 900, 520);
        return true;
    }

    private static bool WriteHeadTraining(Results r, string path)
    {
        if (r.HeadTraining.Count == 0) return false;
        var plot = new Plot();
        var groups = r.HeadTraining.GroupBy(t => t.Dimension).OrderBy(g => g.Key).ToList();
        for (var g = 0; g < groups.Count; g++)
        {
            var points = groups[g].OrderBy(t => t.Rows * t.Epochs).ToList();
            var scatter = plot.Add.ScatterPoints(points.Select(t => (double)t.Rows * t.Epochs / 1000).ToArray(), points.Select(t => t.TrainingSeconds).ToArray());
            scatter.LegendText = $"{groups[g].Key}-d features ({(g == 0 ? "left" : "right")} axis)";
            scatter.MarkerSize = 9;
            // The two sizes differ fiftyfold in cost: each gets its own y axis.
            if (g > 0) scatter.Axes.YAxis = plot.Axes.Right;
            plot.Axes.SetLimitsY(0, points.Max(t => t.TrainingSeconds) * 1.15, g > 0 ? plot.Axes.Right : plot.Axes.Left);
        }
        plot.Title("Head training time (hidden 256) against rows × epochs");
        plot.XLabel("rows × epochs (thousands)");
        plot.Axes.Left.Label.Text = $"training s, {groups[0].Key}-d";
        if (groups.Count > 1) plot.Axes.Right.Label.Text = $"training s, {groups[1].Key}-d";
        plot.Axes.SetLimitsX(0, r.HeadTraining.Max(t => (double)t.Rows * t.Epochs / 1000) * 1.05);
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, 900, 520);
        return true;
    }

    private static bool WriteCurve(Results r, string path)
    {
        if (r.Curve.Count == 0) return false;
        var plot = new Plot();
        var xs = r.Curve.Select((_, i) => (double)i).ToArray();
        foreach (var (name, select) in new (string, Func<CurvePoint, double?>)[]
                 {
                     ("Graft classifier head (MLP)", p => p.GraftClassifier),
                     ("ML.NET LbfgsMaximumEntropy, same features", p => p.MlNet),
                     ("CNN from scratch (TorchSharp)", p => p.Cnn),
                 })
        {
            var points = r.Curve.Select((p, i) => (X: xs[i], Y: select(p))).Where(p => p.Y is not null).ToList();
            if (points.Count == 0) continue;
            var line = plot.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => p.Y!.Value * 100).ToArray());
            line.LegendText = name;
            line.MarkerSize = 8;
        }
        plot.Axes.Bottom.SetTicks(xs, r.Curve.Select(p => p.PerClass.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Title("Fashion-MNIST test accuracy against training images per class");
        plot.XLabel("training images per class");
        plot.YLabel("test accuracy (%)");
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, 900, 520);
        return true;
    }
}

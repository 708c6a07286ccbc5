using System.Globalization;
using Graft.V1;

namespace Graft.Cli.Output;

/// <summary>Invariant-culture formatting shared by every table.</summary>
public static class Format
{
    public static string Number(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);

    public static string Percent(double fraction) => (fraction * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    public static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s";

    /// <summary>A fingerprint shortened for tables; the full value is in `heads show` and `backbone describe`.</summary>
    public static string Short(string fingerprint)
    {
        var hash = fingerprint.IndexOf(':', StringComparison.Ordinal) + 1; // "resnet18:cb198da0c04966c5" keeps its name
        return fingerprint.Length > hash + 8 ? fingerprint[..(hash + 8)] : fingerprint;
    }

    /// <summary>A path relative to the working folder when that is shorter, for tables.</summary>
    public static string Path(string path)
    {
        var relative = System.IO.Path.GetRelativePath(Directory.GetCurrentDirectory(), path);
        return relative.Length < path.Length ? relative : path;
    }

    /// <summary>How deep a version trained: "mlp", "probe", or "last-block (512x7x7)" for one that fine-tuned from a cut point.</summary>
    public static string Depth(HeadVersionInfo v)
    {
        var depth = v.Spec?.Depth ?? HeadDepth.Unspecified;
        var name = depth == HeadDepth.Unspecified && v.Spec?.Hidden is { Sizes.Count: 0 } ? HeadDepths.Probe : depth.Name();
        var shown = v.CutPoint.Length > 0 && v.CutShape.Count > 0 ? $"{name} ({string.Join("x", v.CutShape)})" : name;
        return v.Spec is { HasAugment: true, Augment: > 0 } ? $"{shown}, {v.Spec.Augment} augmented view(s)" : shown;
    }

    public static string Output(HeadOutput o) => o.Kind == HeadKind.Regressor || o.Top.Count == 0
        ? Number(o.Value)
        : $"{o.Top[0].Label} ({Percent(o.Top[0].Probability)})";
}

using System.Globalization;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Flows;

/// <summary>The depth a head trains at, the backbone cut point it takes (empty for the frozen depths) and, when the
/// Gateway chose it (<c>auto</c>), why.</summary>
public sealed record DepthPlan(HeadDepth Depth, CutPointInfo? CutPoint, string Reason)
{
    public string CutPointName => CutPoint?.Name ?? "";
}

/// <summary>Resolves a spec's depth against the backbone in use: explicit depths are checked (a fine-tuning depth needs
/// its cut point), <c>auto</c> picks by data size with the thresholds of <see cref="GatewayOptions"/>.</summary>
public static class DepthRule
{
    public const int MaxAugment = 16;

    /// <summary>Checks the depth and augment fields of a spec, naming the field; called before any example is read.</summary>
    public static void Validate(HeadSpec spec)
    {
        if (!Enum.IsDefined(spec.Depth))
        {
            throw Invalid($"spec.depth {(int)spec.Depth} is not a depth: use probe, mlp, last-block, last-stage or auto (HEAD_DEPTH_PROBE ... HEAD_DEPTH_AUTO).");
        }
        if (spec.HasAugment && spec.Augment is < 0 or > MaxAugment)
        {
            throw Invalid($"spec.augment must be between 0 and {MaxAugment} augmented views per image (got {spec.Augment}).");
        }
    }

    /// <summary>The plan for this spec on this backbone, given the labelled examples (their labels only).</summary>
    public static DepthPlan Resolve(HeadSpec spec, IReadOnlyList<LabelledImage> examples, BackboneInfo backbone, GatewayOptions options)
    {
        var depth = spec.Depth == HeadDepth.Unspecified ? HeadDepth.Mlp : spec.Depth;
        if (depth != HeadDepth.Auto)
        {
            if (!depth.FineTunes())
            {
                return new DepthPlan(depth, null, "");
            }
            var cut = backbone.CutPoints.FirstOrDefault(c => c.Name == depth.CutPoint())
                ?? throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    $"spec.depth {depth.Name()} fine-tunes from the backbone's '{depth.CutPoint()}' cut point, but backbone '{backbone.Name}' " +
                    $"offers {Offered(backbone)}. Use {Alternatives(backbone)}, or depth auto (it falls back to what the backbone offers)."));
            return new DepthPlan(depth, cut, "");
        }

        var (count, basis) = DataSize(spec.Kind, examples);
        var (block, stage, blockKey, stageKey) = spec.Kind == HeadKind.Classifier
            ? (options.AutoLastBlockPerClass, options.AutoLastStagePerClass, nameof(GatewayOptions.AutoLastBlockPerClass), nameof(GatewayOptions.AutoLastStagePerClass))
            : (options.AutoLastBlockExamples, options.AutoLastStageExamples, nameof(GatewayOptions.AutoLastBlockExamples), nameof(GatewayOptions.AutoLastStageExamples));
        var wanted = count >= stage ? HeadDepth.LastStage : count >= block ? HeadDepth.LastBlock : HeadDepth.Mlp;
        if (wanted == HeadDepth.Mlp)
        {
            return new DepthPlan(HeadDepth.Mlp, null,
                $"{basis}: frozen features with an MLP head (fine-tuning starts at {block}, {GatewayOptions.Section}:{blockKey})");
        }

        // A backbone without the wanted cut point (VGG has no residual block, an int8 profile may offer none): the
        // nearest fine-tuning depth it does offer, else the frozen MLP.
        var order = wanted == HeadDepth.LastStage ? new[] { HeadDepth.LastStage, HeadDepth.LastBlock } : [HeadDepth.LastBlock, HeadDepth.LastStage];
        foreach (var candidate in order)
        {
            var cut = backbone.CutPoints.FirstOrDefault(c => c.Name == candidate.CutPoint());
            if (cut is null)
            {
                continue;
            }
            var why = candidate == wanted
                ? $"{basis}: {Doing(candidate)}"
                : $"{basis}: {Doing(candidate)} (backbone '{backbone.Name}' has no '{wanted.CutPoint()}' cut point)";
            return new DepthPlan(candidate, cut, why);
        }
        return new DepthPlan(HeadDepth.Mlp, null,
            $"{basis}: frozen features with an MLP head (backbone '{backbone.Name}' has no cut point to fine-tune from)");

        static string Doing(HeadDepth d) => d == HeadDepth.LastBlock ? "fine-tuning the last block" : "fine-tuning the last stage";
    }

    /// <summary>Classifier: images in its smallest class (the class with the least data limits what fine-tuning can
    /// learn); regressor: images in total.</summary>
    private static (int Count, string Basis) DataSize(HeadKind kind, IReadOnlyList<LabelledImage> examples)
    {
        if (kind != HeadKind.Classifier)
        {
            return (examples.Count, $"{examples.Count.ToString(CultureInfo.InvariantCulture)} images");
        }
        var perClass = examples.GroupBy(e => e.Label, StringComparer.Ordinal).Select(g => (Label: g.Key, Count: g.Count())).ToList();
        var fewest = perClass.MinBy(c => c.Count);
        return perClass.All(c => c.Count == fewest.Count)
            ? (fewest.Count, $"{fewest.Count} images per class")
            : (fewest.Count, $"{fewest.Count} images per class (fewest: '{fewest.Label}')");
    }

    private static string Offered(BackboneInfo backbone) => backbone.CutPoints.Count == 0
        ? "no cut points"
        : "only " + string.Join(", ", backbone.CutPoints.Select(c => $"'{c.Name}'"));

    private static string Alternatives(BackboneInfo backbone) =>
        string.Join(", ", backbone.CutPoints.Select(c => c.Name).Prepend("mlp").Prepend("probe"));

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}

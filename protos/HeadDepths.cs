namespace Graft.V1;

/// <summary>The one place a <see cref="HeadDepth"/> becomes a word and back ("probe", "mlp", "last-block",
/// "last-stage", "auto": how the CLI, <c>head.json</c> and logs spell it), and which backbone cut point a
/// fine-tuning depth starts from (the cut point names of <c>BackboneInfo.cut_points</c>).</summary>
public static class HeadDepths
{
    public const string Probe = "probe";
    public const string Mlp = "mlp";
    public const string LastBlock = "last-block";
    public const string LastStage = "last-stage";
    public const string Auto = "auto";

    public static string Name(this HeadDepth depth) => depth switch
    {
        HeadDepth.Probe => Probe,
        HeadDepth.Mlp or HeadDepth.Unspecified => Mlp,
        HeadDepth.LastBlock => LastBlock,
        HeadDepth.LastStage => LastStage,
        HeadDepth.Auto => Auto,
        _ => "unknown",
    };

    /// <summary>Parses a depth word (exactly); anything else is false.</summary>
    public static bool TryParse(string? name, out HeadDepth depth)
    {
        depth = name switch
        {
            Probe => HeadDepth.Probe,
            Mlp => HeadDepth.Mlp,
            LastBlock => HeadDepth.LastBlock,
            LastStage => HeadDepth.LastStage,
            Auto => HeadDepth.Auto,
            _ => HeadDepth.Unspecified,
        };
        return depth != HeadDepth.Unspecified;
    }

    /// <summary>True for the depths that retrain backbone layers after a cut point.</summary>
    public static bool FineTunes(this HeadDepth depth) => depth is HeadDepth.LastBlock or HeadDepth.LastStage;

    /// <summary>The cut point a fine-tuning depth starts from; empty for the frozen depths.</summary>
    public static string CutPoint(this HeadDepth depth) => depth.FineTunes() ? depth.Name() : "";
}

namespace Graft.V1;

/// <summary>The one place a <see cref="HeadKind"/> becomes a word and back: "regressor" / "classifier" is how the
/// CLI, <c>head.json</c>, logs and metric tags spell it.</summary>
public static class HeadKinds
{
    public const string Regressor = "regressor";
    public const string Classifier = "classifier";

    /// <summary>The kinds a head can be (not <see cref="HeadKind.Unspecified"/>).</summary>
    public static IReadOnlyList<HeadKind> All { get; } = [HeadKind.Regressor, HeadKind.Classifier];

    public static string Name(this HeadKind kind) => kind switch
    {
        HeadKind.Regressor => Regressor,
        HeadKind.Classifier => Classifier,
        _ => "unknown",
    };

    /// <summary>Parses "regressor" or "classifier" (exactly); anything else is false.</summary>
    public static bool TryParse(string? name, out HeadKind kind)
    {
        kind = name switch
        {
            Regressor => HeadKind.Regressor,
            Classifier => HeadKind.Classifier,
            _ => HeadKind.Unspecified,
        };
        return kind != HeadKind.Unspecified;
    }
}

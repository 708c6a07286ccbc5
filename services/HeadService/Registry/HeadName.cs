using System.Text.RegularExpressions;

namespace Graft.Heads.Registry;

/// <summary>Head names are path segments of the registry, so they are checked strictly before any file access.</summary>
public static partial class HeadName
{
    /// <summary>The documented pattern (\z, not $, so a trailing newline does not slip through).</summary>
    public const string Pattern = "^[a-z0-9][a-z0-9._-]{0,62}$";

    [GeneratedRegex(@"^[a-z0-9][a-z0-9._-]{0,62}\z", RegexOptions.CultureInvariant)]
    private static partial Regex Regex();

    /// <summary>True when <paramref name="name"/> is a legal head name.</summary>
    public static bool IsValid(string? name) => name is not null && Regex().IsMatch(name) && !name.Contains("..", StringComparison.Ordinal);

    /// <summary>Null when valid; otherwise a message a person can act on.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return $"A head name is required; it must match {Pattern}.";
        }
        if (IsValid(name))
        {
            return null;
        }
        var shown = name.Length > 80 ? name[..80] + "..." : name;
        return name.Contains("..", StringComparison.Ordinal)
            ? $"Head name '{shown}' contains '..'; names must match {Pattern} and may not contain '..'."
            : $"Head name '{shown}' is not valid; names must match {Pattern} (lower-case letters, digits, '.', '_', '-'; 1-63 characters; starting with a letter or digit).";
    }
}

using System.Text.Json;
using System.Text.RegularExpressions;

namespace Graft.Deployment.Tests;

/// <summary>A parsed Dockerfile: instructions grouped into stages, with global ARG defaults substituted in FROM.</summary>
public sealed partial class Dockerfile
{
    private Dockerfile(IReadOnlyList<Stage> stages) => Stages = stages;

    public IReadOnlyList<Stage> Stages { get; }

    /// <summary>The stage <c>docker build</c> produces without --target: the last one.</summary>
    public Stage Default => Stages[^1];

    public Stage this[string name] => Stages.Single(s => s.Name == name);

    public static Dockerfile Load(string path)
    {
        var globalArgs = new Dictionary<string, string>();
        var stages = new List<Stage>();
        foreach (var (keyword, arguments) in Instructions(File.ReadAllLines(path)))
        {
            if (keyword == "ARG" && stages.Count == 0)
            {
                var eq = arguments.IndexOf('=');
                if (eq > 0)
                {
                    globalArgs[arguments[..eq]] = arguments[(eq + 1)..];
                }

                continue;
            }

            if (keyword == "FROM")
            {
                var parts = Words(ArgReference().Replace(arguments, m => globalArgs.GetValueOrDefault(m.Groups[1].Value, m.Value)));
                var image = parts.First(p => !p.StartsWith("--", StringComparison.Ordinal));
                var name = parts.Count >= 3 && parts[^2].Equals("AS", StringComparison.OrdinalIgnoreCase) ? parts[^1] : null;
                stages.Add(new Stage(image, name));
                continue;
            }

            if (stages.Count == 0)
            {
                throw new InvalidOperationException($"{path}: {keyword} before the first FROM.");
            }

            stages[^1].Instructions.Add(new Instruction(keyword, arguments));
        }

        return new Dockerfile(stages);
    }

    /// <summary>Logical instructions: continuation lines joined, comments and blank lines dropped.</summary>
    private static IEnumerable<(string Keyword, string Arguments)> Instructions(IEnumerable<string> lines)
    {
        var current = "";
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.StartsWith('#') || line.Length == 0)
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                current += line[..^1] + " ";
                continue;
            }

            current += line;
            var space = current.IndexOf(' ');
            yield return (current[..space].ToUpperInvariant(), current[(space + 1)..].Trim());
            current = "";
        }
    }

    public static List<string> Words(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();

    [GeneratedRegex(@"\$\{(\w+)\}")]
    private static partial Regex ArgReference();

    public sealed record Instruction(string Keyword, string Arguments)
    {
        /// <summary>For COPY: its --flags, the sources and the destination.</summary>
        public (Dictionary<string, string> Flags, List<string> Sources, string Destination) Copy()
        {
            var words = Words(Arguments);
            var flags = words.TakeWhile(w => w.StartsWith("--", StringComparison.Ordinal))
                .Select(w => w[2..].Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
            var rest = words.Skip(flags.Count).ToList();
            return (flags, rest[..^1], rest[^1]);
        }

        /// <summary>Exec-form JSON array (ENTRYPOINT, CMD).</summary>
        public string[] ExecForm() => JsonSerializer.Deserialize<string[]>(Arguments)
            ?? throw new InvalidOperationException($"{Keyword} is not in exec form: {Arguments}");

        /// <summary>ENV key=value pairs (values without spaces; empty allowed).</summary>
        public Dictionary<string, string> Env() => Words(Arguments).Select(w => w.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
    }

    public sealed record Stage(string Image, string? Name)
    {
        public List<Instruction> Instructions { get; } = [];

        public IEnumerable<Instruction> All(string keyword) => Instructions.Where(i => i.Keyword == keyword);

        public Instruction? Last(string keyword) => All(keyword).LastOrDefault();
    }
}

/// <summary>.dockerignore rules (Go filepath.Match semantics plus **, later rules win, ! re-includes).</summary>
public sealed class DockerIgnore
{
    private readonly List<(Regex Pattern, bool Exclude)> _rules = [];

    public DockerIgnore(string path)
    {
        foreach (var raw in File.Exists(path) ? File.ReadAllLines(path) : [])
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            var exclude = !line.StartsWith('!');
            var pattern = line.TrimStart('!').Trim('/');
            var regex = "^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?").Replace(@"\*\*", ".*").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]") + "$";
            _rules.Add((new Regex(regex), exclude));
        }
    }

    /// <summary>Whether a context-relative path (or a folder above it) is left out of the build context.</summary>
    public bool Excludes(string relativePath)
    {
        var segments = relativePath.Trim('/').Split('/');
        var excluded = false;
        for (var n = 1; n <= segments.Length; n++)
        {
            var prefix = string.Join('/', segments[..n]);
            foreach (var (pattern, exclude) in _rules)
            {
                if (pattern.IsMatch(prefix))
                {
                    excluded = exclude;
                }
            }
        }

        return excluded;
    }
}

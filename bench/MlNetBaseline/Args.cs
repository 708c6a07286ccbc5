namespace Graft.Bench.MlNet;

/// <summary>A command followed by --name value pairs.</summary>
internal sealed record Args(string Command, IReadOnlyDictionary<string, string> Values)
{
    public static Args Parse(string[] args)
    {
        if (args.Length == 0) throw new ArgumentException("Usage: Graft.Bench.MlNet pipeline|train --name value ...");
        var values = new Dictionary<string, string>();
        for (var i = 1; i + 1 < args.Length; i += 2) values[args[i].TrimStart('-')] = args[i + 1];
        return new Args(args[0], values);
    }

    public string Required(string name) =>
        Values.TryGetValue(name, out var value) ? value : throw new ArgumentException($"--{name} is required for '{Command}'.");

    public string? Optional(string name) => Values.GetValueOrDefault(name);
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Graft.Heads.Registry;

/// <summary>How a split sends traffic to its candidate version.</summary>
public enum SplitMode
{
    /// <summary>A share of the requests is answered by the candidate.</summary>
    Canary,
    /// <summary>Every request also runs the candidate; its answer is compared with the active one and never returned.</summary>
    Shadow,
}

/// <summary>A canary or shadow split of one head: the candidate version and (canary) the percentage it answers.
/// It applies to requests whose features carry the candidate's backbone fingerprint.</summary>
public sealed record TrafficSplit(SplitMode Mode, int Version, double Percent);

/// <summary>The contents of <c>&lt;name&gt;/serving.json</c>: the version active for each backbone fingerprint, and
/// the split. Written whole (fsynced temporary file renamed over it), so a crash leaves the old or the new file.</summary>
/// <param name="ActiveByBackbone">The version active for each backbone fingerprint.</param>
/// <param name="Split">The canary or shadow split, if any.</param>
/// <param name="LegacyPointer">The legacy <c>active</c> pointer's value when this file was written. A different value on disk
/// means an older Graft moved the pointer since, and that activation is honoured for its version's backbone.</param>
public sealed record HeadServing(IReadOnlyDictionary<string, int> ActiveByBackbone, TrafficSplit? Split, int LegacyPointer)
{
    public const string FileName = "serving.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>A copy with <paramref name="version"/> active for <paramref name="fingerprint"/>; the split is removed when
    /// its candidate is the version activated.</summary>
    public HeadServing WithActive(string fingerprint, int version) => new(
        new Dictionary<string, int>(ActiveByBackbone, StringComparer.Ordinal) { [fingerprint] = version },
        Split?.Version == version ? null : Split, version);

    /// <summary>Canonical text, also used to tell whether two scans differ.</summary>
    public string ToJson() => JsonSerializer.Serialize(new Stored
    {
        Format = 1,
        Active = new SortedDictionary<string, int>(ActiveByBackbone.ToDictionary(), StringComparer.Ordinal),
        Split = Split,
        LegacyPointer = LegacyPointer,
    }, Json);

    public bool SameAs(HeadServing? other) => other is not null && ToJson() == other.ToJson();

    /// <summary>Parses the file; throws <see cref="InvalidDataException"/> when it is not a serving file.</summary>
    public static HeadServing Parse(string json)
    {
        Stored? stored;
        try
        {
            stored = JsonSerializer.Deserialize<Stored>(json, Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{FileName} is not valid JSON: {e.Message}");
        }
        if (stored?.Active is null || stored.Active.Any(a => a.Value <= 0 || string.IsNullOrEmpty(a.Key))
            || stored.Split is { } s && (s.Version <= 0 || s.Mode == SplitMode.Canary && s.Percent is not (> 0 and <= 100)))
        {
            throw new InvalidDataException($"{FileName} names a version below 1, an empty fingerprint or a percentage outside (0, 100].");
        }
        return new HeadServing(new Dictionary<string, int>(stored.Active, StringComparer.Ordinal), stored.Split, stored.LegacyPointer);
    }

    private sealed class Stored
    {
        public int Format { get; set; }
        public IDictionary<string, int>? Active { get; set; }
        public TrafficSplit? Split { get; set; }
        public int LegacyPointer { get; set; }
    }
}

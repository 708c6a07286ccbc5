namespace Graft.Heads.Registry;

/// <summary>One version folder as last scanned. <see cref="Error"/> is set when it cannot be served.</summary>
public sealed record VersionEntry(string Name, int Version, string Directory, HeadManifest? Manifest, string? Error)
{
    public bool IsUsable => Manifest is not null && Error is null;
}

/// <summary>One head as last scanned: its versions (oldest first), the version its legacy <c>active</c> pointer names,
/// and its <c>serving.json</c> (active version per backbone fingerprint, canary or shadow split) when it has one.</summary>
public sealed record HeadEntry(string Name, int PointerVersion, IReadOnlyList<VersionEntry> Versions, HeadServing? Serving = null)
{
    public VersionEntry? Find(int version) => Versions.FirstOrDefault(v => v.Version == version);

    /// <summary>The version last activated: the legacy pointer's, or the newest when no pointer was written yet.
    /// It is the head's "active version" for a caller that names no backbone.</summary>
    public int DesiredVersion => PointerVersion > 0 ? PointerVersion : Versions.Count > 0 ? Versions[^1].Version : 0;

    /// <summary>The version that should serve each backbone fingerprint. From <c>serving.json</c> when present; for a
    /// head written before it existed, the legacy pointer's version (or the newest) for its own fingerprint only, which
    /// is exactly what served before.</summary>
    public IReadOnlyDictionary<string, int> ActiveVersions => _active ??= ComputeActive();

    private IReadOnlyDictionary<string, int>? _active;

    /// <summary>The version active for <paramref name="fingerprint"/>; 0 when the head has none for it.</summary>
    public int ActiveFor(string fingerprint) => ActiveVersions.GetValueOrDefault(fingerprint);

    /// <summary>The fingerprint of the last activated version (the one a caller naming no backbone sees).</summary>
    public string? DefaultFingerprint => LegacyFingerprint() ?? ActiveVersions.Keys.Order(StringComparer.Ordinal).FirstOrDefault();

    /// <summary>True when the version serves a backbone or is the candidate of a split, so it must not be deleted.</summary>
    public bool IsInUse(int version) => ActiveVersions.Values.Contains(version) || Serving?.Split?.Version == version
        || version == DesiredVersion;

    private Dictionary<string, int> ComputeActive()
    {
        var result = new Dictionary<string, int>(Serving?.ActiveByBackbone ?? new Dictionary<string, int>(), StringComparer.Ordinal);
        // Without serving.json, or when an older Graft moved the legacy pointer after serving.json was written: that
        // pointer names the version for its own backbone.
        if ((Serving is null || PointerVersion > 0 && PointerVersion != Serving.LegacyPointer) && LegacyFingerprint() is { } fingerprint)
        {
            result[fingerprint] = DesiredVersion;
        }
        return result;
    }

    /// <summary>The fingerprint of the legacy pointer's version; when that version's manifest is unreadable, that of the
    /// newest readable version below it (the one that serves instead).</summary>
    private string? LegacyFingerprint()
    {
        var desired = DesiredVersion;
        return Find(desired)?.Manifest?.BackboneFingerprint
            ?? Versions.Where(v => v.Version < desired && v.Manifest is not null).LastOrDefault()?.Manifest!.BackboneFingerprint;
    }
}

/// <summary>An immutable view of the registry; a rescan swaps in a new one.</summary>
public sealed record RegistrySnapshot(IReadOnlyDictionary<string, HeadEntry> Heads, long Generation)
{
    public static RegistrySnapshot Empty { get; } = new(new Dictionary<string, HeadEntry>(), 0);
}

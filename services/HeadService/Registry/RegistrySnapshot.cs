namespace Graft.Heads.Registry;

/// <summary>One version folder as last scanned. <see cref="Error"/> is set when it cannot be served.</summary>
public sealed record VersionEntry(string Name, int Version, string Directory, HeadManifest? Manifest, string? Error)
{
    public bool IsUsable => Manifest is not null && Error is null;
}

/// <summary>One head as last scanned: its versions (oldest first) and the version its <c>active</c> pointer names.</summary>
public sealed record HeadEntry(string Name, int PointerVersion, IReadOnlyList<VersionEntry> Versions)
{
    public VersionEntry? Find(int version) => Versions.FirstOrDefault(v => v.Version == version);

    /// <summary>The version that should serve: the pointer's, or the newest when no pointer was written yet.</summary>
    public int DesiredVersion => PointerVersion > 0 ? PointerVersion : Versions.Count > 0 ? Versions[^1].Version : 0;
}

/// <summary>An immutable view of the registry; a rescan swaps in a new one.</summary>
public sealed record RegistrySnapshot(IReadOnlyDictionary<string, HeadEntry> Heads, long Generation)
{
    public static RegistrySnapshot Empty { get; } = new(new Dictionary<string, HeadEntry>(), 0);
}

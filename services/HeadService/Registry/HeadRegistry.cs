using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Graft.ServiceDefaults;

namespace Graft.Heads.Registry;

/// <summary>
/// The filesystem head registry: <c>&lt;root&gt;/&lt;name&gt;/v&lt;N&gt;/</c> holds <c>weights.safetensors</c> and
/// <c>head.json</c>; <c>&lt;root&gt;/&lt;name&gt;/active</c> names the version in use. Every change is a rename of
/// fully written, fsynced content, so a crash never exposes half a version, and several replicas may share the folder.
/// </summary>
public sealed partial class HeadRegistry
{
    public const string ActiveFileName = RegistryPaths.ActiveFileName;

    private readonly ILogger<HeadRegistry> _logger;
    private readonly Lock _scanLock = new();
    private readonly RegistryScanner _scanner;
    private volatile RegistrySnapshot _current = RegistrySnapshot.Empty;

    public HeadRegistry(IOptions<HeadOptions> options, ILogger<HeadRegistry> logger)
    {
        _logger = logger;
        _scanner = new RegistryScanner(logger);
        Root = Path.GetFullPath(options.Value.RegistryPath);
        Directory.CreateDirectory(Root);
    }

    /// <summary>Absolute path of the registry root.</summary>
    public string Root { get; }

    /// <summary>The latest scan. Call <see cref="Rescan"/> to refresh it.</summary>
    public RegistrySnapshot Current => _current;

    /// <summary>Raised after a rescan that changed anything.</summary>
    public event Action<RegistrySnapshot>? Changed;

    /// <summary>Reads the folder tree (<see cref="RegistryScanner"/>) and swaps in a new snapshot when anything changed.</summary>
    public RegistrySnapshot Rescan()
    {
        RegistrySnapshot next;
        bool changed;
        lock (_scanLock)
        {
            var heads = _scanner.Scan(Root);
            var previous = _current;
            changed = !SameContent(previous.Heads, heads);
            next = changed ? new RegistrySnapshot(heads, previous.Generation + 1) : previous;
            _current = next;
        }
        if (changed)
        {
            Changed?.Invoke(next);
        }
        return next;
    }

    /// <summary>Publishes a new version of <paramref name="draft"/>'s head and (by default) activates it.
    /// The version number is the next free one, claimed by the atomic rename of a complete temporary folder.
    /// A fine-tuned version also stores its retrained <paramref name="tail"/> (ONNX), checksummed like the weights.</summary>
    public HeadManifest Publish(HeadManifest draft, byte[] weights, bool activate = true, byte[]? tail = null)
    {
        if (!HeadName.IsValid(draft.Name))
        {
            throw HeadException.Invalid(HeadName.Problem(draft.Name)!);
        }
        if (draft.FineTuned != tail is not null)
        {
            throw new ArgumentException(draft.FineTuned ? "A fine-tuned version needs its tail." : "Only a fine-tuned version has a tail.", nameof(tail));
        }
        var headDir = Path.Combine(Root, draft.Name);
        Directory.CreateDirectory(headDir);
        // What serves before this version exists (a head without serving.json: its legacy pointer's version).
        var before = Rescan().Heads.GetValueOrDefault(draft.Name);
        var sha = Convert.ToHexStringLower(SHA256.HashData(weights));
        var temp = Path.Combine(headDir, RegistryPaths.TempPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            Durable.WriteNewFile(Path.Combine(temp, HeadManifest.WeightsFileName), weights);
            if (tail is not null)
            {
                Durable.WriteNewFile(Path.Combine(temp, HeadManifest.TailFileName), tail);
                draft = draft with
                {
                    Format = HeadManifest.FineTunedFormat,
                    TailFile = HeadManifest.TailFileName,
                    TailSha256 = Convert.ToHexStringLower(SHA256.HashData(tail)),
                    TailBytes = tail.Length,
                };
            }
            for (var attempt = 0; ; attempt++)
            {
                var version = RegistryPaths.NextVersion(headDir);
                var manifest = draft with { Version = version, WeightsSha256 = sha, WeightsBytes = weights.Length, WeightsFile = HeadManifest.WeightsFileName };
                var manifestPath = Path.Combine(temp, HeadManifest.FileName);
                File.Delete(manifestPath);
                Durable.WriteNewFile(manifestPath, manifest.ToJsonBytes());
                Durable.FsyncDirectory(temp);
                var target = Path.Combine(headDir, RegistryPaths.VersionDirectoryName(version));
                try
                {
                    Directory.Move(temp, target);
                }
                catch (IOException) when (Directory.Exists(target) && attempt < 100)
                {
                    // Another replica claimed this number first; take the next one.
                    continue;
                }
                Durable.FsyncDirectory(headDir);
                if (activate)
                {
                    SetActive(headDir, before, manifest.BackboneFingerprint, version);
                }
                LogPublished(_logger, draft.Name, version, weights.Length);
                Rescan();
                return manifest;
            }
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }

    /// <summary>Points the head at <paramref name="version"/> after checking that version loads cleanly.</summary>
    public HeadEntry Activate(string name, int version)
    {
        var head = RequireHead(name);
        var entry = head.Find(version) ?? throw NoSuchVersion(head, version);
        try
        {
            _ = HeadWeights.Load(entry);
            if (entry.Manifest is { FineTuned: true })
            {
                _ = HeadWeights.LoadTail(entry);
            }
        }
        catch (InvalidDataException e)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition, $"Head '{name}' version {version} cannot be activated: {e.Message}");
        }
        SetActive(Path.Combine(Root, name), head, entry.Manifest!.BackboneFingerprint, version);
        LogActivated(_logger, name, version, entry.Manifest.BackboneFingerprint);
        Rescan();
        return RequireHead(name);
    }

    /// <summary>Deletes one non-active version, or the whole head when <paramref name="version"/> is 0.</summary>
    public IReadOnlyList<int> Delete(string name, int version)
    {
        var head = RequireHead(name);
        var headDir = Path.Combine(Root, name);
        List<int> removed;
        string doomed;
        if (version == 0)
        {
            removed = head.Versions.Select(v => v.Version).ToList();
            doomed = Path.Combine(Root, RegistryPaths.DeletedPrefix + name + "-" + Guid.NewGuid().ToString("N"));
            // One rename makes the whole head vanish for every replica at once.
            Directory.Move(headDir, doomed);
            Durable.FsyncDirectory(Root);
        }
        else
        {
            var entry = head.Find(version) ?? throw NoSuchVersion(head, version);
            if (head.IsInUse(entry.Version))
            {
                throw new HeadException(HeadErrorKind.FailedPrecondition, head.Serving?.Split?.Version == version
                    ? $"Version {version} of head '{name}' is the candidate of its {head.Serving.Split.Mode.ToString().ToLowerInvariant()} split; abort or promote the split first."
                    : $"Version {version} of head '{name}' is the active one for a backbone; activate another version first, or delete the whole head with version 0.");
            }
            removed = [version];
            doomed = Path.Combine(headDir, RegistryPaths.DeletedPrefix + RegistryPaths.VersionDirectoryName(version) + "-" + Guid.NewGuid().ToString("N"));
            Directory.Move(entry.Directory, doomed);
            Durable.FsyncDirectory(headDir);
        }
        Directory.Delete(doomed, recursive: true);
        LogDeleted(_logger, name, version);
        Rescan();
        return removed;
    }

    /// <summary>Sets a canary or shadow split: <paramref name="version"/> is the candidate against the version active for
    /// its backbone. Persisted in <c>serving.json</c>; replaces any split the head had.</summary>
    public HeadEntry SetSplit(string name, int version, SplitMode mode, double percent)
    {
        var head = RequireHead(name);
        var entry = head.Find(version) ?? throw NoSuchVersion(head, version);
        if (mode == SplitMode.Canary && percent is not (> 0 and <= 100))
        {
            throw HeadException.Invalid($"percent is {percent}; a canary takes a share of the traffic in (0, 100].");
        }
        if (mode == SplitMode.Shadow && percent != 0)
        {
            throw HeadException.Invalid($"percent is {percent}; a shadow runs on every request, so leave percent at 0.");
        }
        try
        {
            _ = HeadWeights.Load(entry);
        }
        catch (InvalidDataException e)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition, $"Head '{name}' version {version} cannot be a candidate: {e.Message}");
        }
        var fingerprint = entry.Manifest!.BackboneFingerprint;
        var active = head.ActiveFor(fingerprint);
        if (active == 0)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition,
                $"Head '{name}' has no active version for backbone '{fingerprint}' (version {version}'s) to compare the candidate with; activate version {version} instead.");
        }
        if (active == version)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition, $"Version {version} of head '{name}' is already the active one for its backbone; name another version as the candidate.");
        }
        var serving = CurrentServing(head) with { Split = new TrafficSplit(mode, version, mode == SplitMode.Canary ? percent : 0) };
        RegistryPaths.WriteServing(Path.Combine(Root, name), serving);
        LogSplitSet(_logger, name, mode, version, percent, active);
        Rescan();
        return RequireHead(name);
    }

    /// <summary>Makes the split's candidate the active version for its backbone and removes the split.</summary>
    public HeadEntry PromoteSplit(string name)
    {
        var split = RequireHead(name).Serving?.Split ?? throw NoSplit(name);
        return Activate(name, split.Version);
    }

    /// <summary>Removes the split; the active versions keep serving.</summary>
    public HeadEntry AbortSplit(string name)
    {
        var head = RequireHead(name);
        var split = head.Serving?.Split ?? throw NoSplit(name);
        RegistryPaths.WriteServing(Path.Combine(Root, name), CurrentServing(head) with { Split = null });
        LogSplitAborted(_logger, name, split.Version);
        Rescan();
        return RequireHead(name);
    }

    private static HeadException NoSplit(string name) => new(HeadErrorKind.FailedPrecondition,
        $"Head '{name}' has no canary or shadow split; set one with SetTrafficSplit (graft heads canary|shadow).");

    /// <summary>The head's serving state as it stands, from <c>serving.json</c> or, for a head written before it existed,
    /// from its legacy pointer (so the first write keeps what served).</summary>
    private static HeadServing CurrentServing(HeadEntry? head)
        => new(head?.ActiveVersions ?? new Dictionary<string, int>(), head?.Serving?.Split, head?.PointerVersion ?? 0);

    /// <summary>Makes <paramref name="version"/> active for <paramref name="fingerprint"/> only, in <c>serving.json</c>;
    /// the legacy pointer follows the last activation so older replicas sharing the folder still serve something sane.</summary>
    private static void SetActive(string headDir, HeadEntry? head, string fingerprint, int version)
    {
        RegistryPaths.WriteServing(headDir, CurrentServing(head).WithActive(fingerprint, version));
        RegistryPaths.WritePointer(headDir, version);
    }

    private static bool SameServing(HeadServing? a, HeadServing? b) => a is null ? b is null : a.SameAs(b);

    /// <summary>Records that a version failed to load, so listings show it and it is skipped until it changes.</summary>
    public void ReportLoadFailure(string name, int version, string reason)
    {
        lock (_scanLock)
        {
            _scanner.RecordLoadFailure(name, version, reason);
        }
        Rescan();
    }

    /// <summary>The head, or NOT_FOUND naming the heads that exist.</summary>
    public HeadEntry RequireHead(string name)
    {
        if (HeadName.Problem(name) is { } problem)
        {
            throw HeadException.Invalid(problem);
        }
        var snapshot = _current;
        if (snapshot.Heads.TryGetValue(name, out var head))
        {
            return head;
        }
        // A publish by another replica may not have been seen yet.
        snapshot = Rescan();
        return snapshot.Heads.TryGetValue(name, out head) ? head : throw NotFound(name, snapshot);
    }

    /// <summary>NOT_FOUND for a version a head does not have, listing the versions it has.</summary>
    public static HeadException NoSuchVersion(HeadEntry head, int version) => new(HeadErrorKind.NotFound,
        $"Head '{head.Name}' has no version {version}; it has versions {string.Join(", ", head.Versions.Select(v => v.Version))}.");

    /// <summary>The one NOT_FOUND for an unknown head: it names the heads that exist, so every caller (and the
    /// Gateway, which passes it on) shows the user what to ask for instead.</summary>
    public static HeadException NotFound(string name, RegistrySnapshot snapshot)
    {
        const int shown = 50;
        var names = snapshot.Heads.Keys.Order(StringComparer.Ordinal).ToList();
        var list = names.Count == 0 ? "there are no heads yet"
            : "existing heads: " + string.Join(", ", names.Take(shown)) + (names.Count > shown ? $" and {names.Count - shown} more" : "");
        return new HeadException(HeadErrorKind.NotFound, $"Head '{name}' does not exist; {list}.");
    }

    private static bool SameContent(IReadOnlyDictionary<string, HeadEntry> a, Dictionary<string, HeadEntry> b)
    {
        if (a.Count != b.Count)
        {
            return false;
        }
        foreach (var (name, head) in b)
        {
            if (!a.TryGetValue(name, out var old) || old.PointerVersion != head.PointerVersion || !SameServing(old.Serving, head.Serving) || !old.Versions.SequenceEqual(head.Versions))
            {
                return false;
            }
        }
        return true;
    }

    [LoggerMessage(EventId = 3100, Level = LogLevel.Information, Message = "Published head {Name} version {Version} ({Bytes} bytes of weights)")]
    private static partial void LogPublished(ILogger logger, string name, int version, long bytes);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Activated head {Name} version {Version} for backbone {Fingerprint}")]
    private static partial void LogActivated(ILogger logger, string name, int version, string fingerprint);

    [LoggerMessage(EventId = 3701, Level = LogLevel.Information, Message = "Head {Name}: {Mode} split to version {Version} ({Percent}%) against active version {Active}")]
    private static partial void LogSplitSet(ILogger logger, string name, SplitMode mode, int version, double percent, int active);

    [LoggerMessage(EventId = 3702, Level = LogLevel.Information, Message = "Head {Name}: split to version {Version} aborted")]
    private static partial void LogSplitAborted(ILogger logger, string name, int version);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "Deleted head {Name} version {Version} (0 = all versions)")]
    private static partial void LogDeleted(ILogger logger, string name, int version);
}

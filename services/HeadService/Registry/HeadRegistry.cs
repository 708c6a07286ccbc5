using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

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
        var headDir = Path.Combine(Root, draft.Name);
        Directory.CreateDirectory(headDir);
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
                    RegistryPaths.WritePointer(headDir, version);
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
        RegistryPaths.WritePointer(Path.Combine(Root, name), version);
        LogActivated(_logger, name, version);
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
            if (entry.Version == head.DesiredVersion)
            {
                throw new HeadException(HeadErrorKind.FailedPrecondition,
                    $"Version {version} of head '{name}' is the active one; activate another version first, or delete the whole head with version 0.");
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
            if (!a.TryGetValue(name, out var old) || old.PointerVersion != head.PointerVersion || !old.Versions.SequenceEqual(head.Versions))
            {
                return false;
            }
        }
        return true;
    }

    [LoggerMessage(EventId = 3100, Level = LogLevel.Information, Message = "Published head {Name} version {Version} ({Bytes} bytes of weights)")]
    private static partial void LogPublished(ILogger logger, string name, int version, long bytes);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Activated head {Name} version {Version}")]
    private static partial void LogActivated(ILogger logger, string name, int version);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "Deleted head {Name} version {Version} (0 = all versions)")]
    private static partial void LogDeleted(ILogger logger, string name, int version);
}

using System.Collections.Concurrent;
using System.Globalization;
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
    public const string ActiveFileName = "active";
    private const string TempPrefix = ".tmp-";
    private const string DeletedPrefix = ".deleted-";
    private static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    private readonly ILogger<HeadRegistry> _logger;
    private readonly Lock _scanLock = new();
    private readonly Dictionary<(string, int), CachedManifest> _manifests = [];
    private readonly ConcurrentDictionary<(string, int), string> _loadErrors = new();
    private readonly HashSet<(string, int, string)> _reported = [];
    private volatile RegistrySnapshot _current = RegistrySnapshot.Empty;

    public HeadRegistry(IOptions<HeadOptions> options, ILogger<HeadRegistry> logger)
    {
        _logger = logger;
        Root = Path.GetFullPath(options.Value.RegistryPath);
        Directory.CreateDirectory(Root);
    }

    /// <summary>Absolute path of the registry root.</summary>
    public string Root { get; }

    /// <summary>The latest scan. Call <see cref="Rescan"/> to refresh it.</summary>
    public RegistrySnapshot Current => _current;

    /// <summary>Raised after a rescan that changed anything.</summary>
    public event Action<RegistrySnapshot>? Changed;

    /// <summary>Reads the folder tree and swaps in a new snapshot. Cheap: manifests are cached by file stamp,
    /// weights are only size-checked here (the SHA-256 is checked when a version is loaded).</summary>
    public RegistrySnapshot Rescan()
    {
        RegistrySnapshot next;
        bool changed;
        lock (_scanLock)
        {
            var heads = new Dictionary<string, HeadEntry>(StringComparer.Ordinal);
            var seen = new HashSet<(string, int)>();
            foreach (var headDir in SafeEnumerateDirectories(Root))
            {
                var name = Path.GetFileName(headDir);
                if (!HeadName.IsValid(name))
                {
                    CleanUpAbandoned(headDir, name);
                    continue;
                }
                var versions = new List<VersionEntry>();
                foreach (var versionDir in SafeEnumerateDirectories(headDir))
                {
                    var dirName = Path.GetFileName(versionDir);
                    if (TryParseVersionDirectory(dirName, out var version))
                    {
                        seen.Add((name, version));
                        versions.Add(ReadVersion(name, version, versionDir));
                    }
                    else
                    {
                        CleanUpAbandoned(versionDir, dirName);
                    }
                }
                if (versions.Count == 0)
                {
                    continue;
                }
                versions.Sort((a, b) => a.Version.CompareTo(b.Version));
                heads[name] = new HeadEntry(name, ReadPointer(headDir, name), versions);
            }
            foreach (var key in _manifests.Keys.Where(k => !seen.Contains(k)).ToList())
            {
                _manifests.Remove(key);
                _loadErrors.TryRemove(key, out _);
            }
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
    /// The version number is the next free one, claimed by the atomic rename of a complete temporary folder.</summary>
    public HeadManifest Publish(HeadManifest draft, byte[] weights, bool activate = true)
    {
        if (!HeadName.IsValid(draft.Name))
        {
            throw HeadException.Invalid(HeadName.Problem(draft.Name)!);
        }
        var headDir = Path.Combine(Root, draft.Name);
        Directory.CreateDirectory(headDir);
        var sha = Convert.ToHexStringLower(SHA256.HashData(weights));
        var temp = Path.Combine(headDir, TempPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            Durable.WriteNewFile(Path.Combine(temp, HeadManifest.WeightsFileName), weights);
            for (var attempt = 0; ; attempt++)
            {
                var version = NextVersion(headDir);
                var manifest = draft with { Version = version, WeightsSha256 = sha, WeightsBytes = weights.Length, WeightsFile = HeadManifest.WeightsFileName };
                var manifestPath = Path.Combine(temp, HeadManifest.FileName);
                File.Delete(manifestPath);
                Durable.WriteNewFile(manifestPath, manifest.ToJsonBytes());
                Durable.FsyncDirectory(temp);
                var target = Path.Combine(headDir, VersionDirectoryName(version));
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
                    WritePointer(headDir, version);
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
            _ = LoadWeights(entry);
        }
        catch (InvalidDataException e)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition, $"Head '{name}' version {version} cannot be activated: {e.Message}");
        }
        WritePointer(Path.Combine(Root, name), version);
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
            doomed = Path.Combine(Root, DeletedPrefix + name + "-" + Guid.NewGuid().ToString("N"));
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
            doomed = Path.Combine(headDir, DeletedPrefix + VersionDirectoryName(version) + "-" + Guid.NewGuid().ToString("N"));
            Directory.Move(entry.Directory, doomed);
            Durable.FsyncDirectory(headDir);
        }
        Directory.Delete(doomed, recursive: true);
        LogDeleted(_logger, name, version);
        Rescan();
        return removed;
    }

    /// <summary>Reads a version's weights and checks them against the SHA-256 in its manifest.</summary>
    /// <exception cref="InvalidDataException">The version is missing, truncated or corrupt.</exception>
    public IReadOnlyList<NamedTensor> LoadWeights(VersionEntry entry)
    {
        var manifest = entry.Manifest ?? throw new InvalidDataException(entry.Error ?? "head.json is unreadable.");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(Path.Combine(entry.Directory, manifest.WeightsFile));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"weights file cannot be read: {e.Message}", e);
        }
        if (bytes.Length != manifest.WeightsBytes)
        {
            throw new InvalidDataException($"weights file is {bytes.Length} bytes but head.json says {manifest.WeightsBytes} (truncated or replaced).");
        }
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (!string.Equals(sha, manifest.WeightsSha256, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"weights file SHA-256 is {sha} but head.json says {manifest.WeightsSha256} (corrupt).");
        }
        return SafeTensors.Deserialize(bytes);
    }

    /// <summary>Records that a version failed to load, so listings show it and it is skipped until it changes.</summary>
    public void ReportLoadFailure(string name, int version, string reason)
    {
        _loadErrors[(name, version)] = reason;
        lock (_scanLock)
        {
            if (_reported.Add((name, version, reason)))
            {
                LogCorrupt(_logger, name, version, reason);
            }
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

    private VersionEntry ReadVersion(string name, int version, string dir)
    {
        var manifestPath = Path.Combine(dir, HeadManifest.FileName);
        HeadManifest? manifest = null;
        string? error;
        try
        {
            var info = new FileInfo(manifestPath);
            if (!info.Exists)
            {
                throw new InvalidDataException("head.json is missing.");
            }
            var key = (name, version);
            if (!_manifests.TryGetValue(key, out var cached) || cached.Stamp != info.LastWriteTimeUtc || cached.Length != info.Length)
            {
                cached = new CachedManifest(info.LastWriteTimeUtc, info.Length, HeadManifest.Parse(File.ReadAllBytes(manifestPath)));
                _manifests[key] = cached;
            }
            manifest = cached.Manifest;
            if (manifest.Name != name || manifest.Version != version)
            {
                throw new InvalidDataException($"head.json names {manifest.Name} v{manifest.Version}, not {name} v{version}.");
            }
            var weights = new FileInfo(Path.Combine(dir, manifest.WeightsFile));
            if (!weights.Exists || weights.Length != manifest.WeightsBytes)
            {
                throw new InvalidDataException(weights.Exists
                    ? $"weights file is {weights.Length} bytes but head.json says {manifest.WeightsBytes} (truncated or replaced)."
                    : "weights file is missing.");
            }
            error = _loadErrors.TryGetValue(key, out var loadError) ? loadError : null;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            error = e.Message;
            _manifests.Remove((name, version));
        }
        if (error is not null && _reported.Add((name, version, error)))
        {
            LogCorrupt(_logger, name, version, error);
        }
        return new VersionEntry(name, version, dir, manifest, error);
    }

    private int ReadPointer(string headDir, string name)
    {
        var path = Path.Combine(headDir, ActiveFileName);
        try
        {
            var text = File.ReadAllText(path).Trim();
            if (int.TryParse(text.TrimStart('v'), NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0)
            {
                return version;
            }
            if (_reported.Add((name, 0, text)))
            {
                LogBadPointer(_logger, name, text);
            }
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // No pointer yet: the newest version serves.
        }
        catch (IOException)
        {
            // Transient (e.g. a network volume hiccup); the next scan retries.
        }
        return 0;
    }

    private void WritePointer(string headDir, int version)
    {
        var temp = Path.Combine(headDir, TempPrefix + "active-" + Guid.NewGuid().ToString("N"));
        Durable.WriteNewFile(temp, System.Text.Encoding.ASCII.GetBytes(version.ToString(CultureInfo.InvariantCulture) + "\n"));
        File.Move(temp, Path.Combine(headDir, ActiveFileName), overwrite: true);
        Durable.FsyncDirectory(headDir);
    }

    private static int NextVersion(string headDir)
    {
        var max = 0;
        foreach (var dir in SafeEnumerateDirectories(headDir))
        {
            if (TryParseVersionDirectory(Path.GetFileName(dir), out var v))
            {
                max = Math.Max(max, v);
            }
        }
        return max + 1;
    }

    private static string VersionDirectoryName(int version) => "v" + version.ToString(CultureInfo.InvariantCulture);

    private static bool TryParseVersionDirectory(string dirName, out int version)
    {
        version = 0;
        return dirName.Length > 1 && dirName[0] == 'v'
            && int.TryParse(dirName.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out version) && version > 0
            && dirName == VersionDirectoryName(version);
    }

    /// <summary>Removes temporary and deleted folders left by a crash, once they are old enough not to be in use.</summary>
    private void CleanUpAbandoned(string path, string entryName)
    {
        if (!entryName.StartsWith(TempPrefix, StringComparison.Ordinal) && !entryName.StartsWith(DeletedPrefix, StringComparison.Ordinal))
        {
            return;
        }
        try
        {
            if (DateTime.UtcNow - Directory.GetLastWriteTimeUtc(path) > AbandonedAfter)
            {
                Directory.Delete(path, recursive: true);
                LogCleanedUp(_logger, path);
            }
        }
        catch (IOException)
        {
            // Another replica removed it first.
        }
    }

    private static IEnumerable<string> SafeEnumerateDirectories(string path)
    {
        try
        {
            return Directory.GetDirectories(path);
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException)
        {
            return [];
        }
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

    private sealed record CachedManifest(DateTime Stamp, long Length, HeadManifest Manifest);

    [LoggerMessage(EventId = 3100, Level = LogLevel.Information, Message = "Published head {Name} version {Version} ({Bytes} bytes of weights)")]
    private static partial void LogPublished(ILogger logger, string name, int version, long bytes);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Activated head {Name} version {Version}")]
    private static partial void LogActivated(ILogger logger, string name, int version);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "Deleted head {Name} version {Version} (0 = all versions)")]
    private static partial void LogDeleted(ILogger logger, string name, int version);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Error, Message = "Head {Name} version {Version} is unusable and is skipped: {Reason}")]
    private static partial void LogCorrupt(ILogger logger, string name, int version, string reason);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "Head {Name} has an unreadable active pointer '{Text}'; the newest version serves")]
    private static partial void LogBadPointer(ILogger logger, string name, string text);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Information, Message = "Removed abandoned registry folder {Path}")]
    private static partial void LogCleanedUp(ILogger logger, string path);
}

using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Graft.Heads.Registry;

/// <summary>Reads the registry's folder tree into head entries. Cheap to repeat: manifests are cached by file stamp,
/// weights are only size-checked (their SHA-256 is checked when a version is loaded). Each unusable version, bad
/// pointer or recorded load failure is logged once. Not thread-safe: <see cref="HeadRegistry"/> calls it under its lock.</summary>
internal sealed partial class RegistryScanner(ILogger logger)
{
    private static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    private readonly Dictionary<(string, int), CachedManifest> _manifests = [];
    private readonly ConcurrentDictionary<(string, int), string> _loadErrors = new();
    private readonly HashSet<(string, int, string)> _reported = [];

    /// <summary>Every head with at least one version folder under <paramref name="root"/>; cleans up abandoned work on the way.</summary>
    public Dictionary<string, HeadEntry> Scan(string root)
    {
        var heads = new Dictionary<string, HeadEntry>(StringComparer.Ordinal);
        var seen = new HashSet<(string, int)>();
        foreach (var headDir in RegistryPaths.SafeEnumerateDirectories(root))
        {
            var name = Path.GetFileName(headDir);
            if (!HeadName.IsValid(name))
            {
                CleanUpAbandoned(headDir, name);
                continue;
            }
            var versions = new List<VersionEntry>();
            foreach (var versionDir in RegistryPaths.SafeEnumerateDirectories(headDir))
            {
                var dirName = Path.GetFileName(versionDir);
                if (RegistryPaths.TryParseVersionDirectory(dirName, out var version))
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
            heads[name] = new HeadEntry(name, ReadPointer(headDir, name), versions, ReadServing(headDir, name));
        }
        foreach (var key in _manifests.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            _manifests.Remove(key);
            _loadErrors.TryRemove(key, out _);
        }
        return heads;
    }

    /// <summary>Records that a version failed to load; the next scans list it with this error.</summary>
    public void RecordLoadFailure(string name, int version, string reason)
    {
        _loadErrors[(name, version)] = reason;
        if (_reported.Add((name, version, reason)))
        {
            LogCorrupt(logger, name, version, reason);
        }
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
            if (manifest.FineTuned && new FileInfo(Path.Combine(dir, manifest.TailFile)) is var tail && (!tail.Exists || tail.Length != manifest.TailBytes))
            {
                throw new InvalidDataException(tail.Exists
                    ? $"tail file is {tail.Length} bytes but head.json says {manifest.TailBytes} (truncated or replaced)."
                    : "tail file is missing.");
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
            LogCorrupt(logger, name, version, error);
        }
        return new VersionEntry(name, version, dir, manifest, error);
    }

    private HeadServing? ReadServing(string headDir, string name)
    {
        var (serving, problem) = RegistryPaths.ReadServing(headDir);
        if (problem is not null && _reported.Add((name, -1, problem)))
        {
            LogBadServing(logger, name, problem);
        }
        return serving;
    }

    private int ReadPointer(string headDir, string name)
    {
        var (version, badText) = RegistryPaths.ReadPointer(headDir);
        if (badText is not null && _reported.Add((name, 0, badText)))
        {
            LogBadPointer(logger, name, badText);
        }
        return version;
    }

    /// <summary>Removes temporary and deleted folders left by a crash, once they are old enough not to be in use.</summary>
    private void CleanUpAbandoned(string path, string entryName)
    {
        if (!entryName.StartsWith(RegistryPaths.TempPrefix, StringComparison.Ordinal) && !entryName.StartsWith(RegistryPaths.DeletedPrefix, StringComparison.Ordinal))
        {
            return;
        }
        try
        {
            if (DateTime.UtcNow - Directory.GetLastWriteTimeUtc(path) > AbandonedAfter)
            {
                Directory.Delete(path, recursive: true);
                LogCleanedUp(logger, path);
            }
        }
        catch (IOException)
        {
            // Another replica removed it first.
        }
    }

    private sealed record CachedManifest(DateTime Stamp, long Length, HeadManifest Manifest);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Error, Message = "Head {Name} version {Version} is unusable and is skipped: {Reason}")]
    private static partial void LogCorrupt(ILogger logger, string name, int version, string reason);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "Head {Name} has an unreadable active pointer '{Text}'; the newest version serves")]
    private static partial void LogBadPointer(ILogger logger, string name, string text);

    [LoggerMessage(EventId = 3700, Level = LogLevel.Warning, Message = "Head {Name} has an unreadable serving.json ({Problem}); its legacy active pointer decides what serves")]
    private static partial void LogBadServing(ILogger logger, string name, string problem);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Information, Message = "Removed abandoned registry folder {Path}")]
    private static partial void LogCleanedUp(ILogger logger, string path);
}

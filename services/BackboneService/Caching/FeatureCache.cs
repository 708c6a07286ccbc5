using System.Security.Cryptography;
using Microsoft.Extensions.Caching.Memory;

namespace Graft.Backbone.Caching;

/// <summary>Content-addressed feature cache: the key is SHA-256 over the input bytes and the backbone fingerprint, so
/// the same image always maps to the same entry and features of another backbone never match. Bounded in bytes;
/// when full, the least recently used entries are compacted away.</summary>
public sealed class FeatureCache : IDisposable
{
    // Per-entry bookkeeping (key string, entry object, array header) counted against the bound.
    private const int EntryOverheadBytes = 200;

    private readonly MemoryCache? _cache;
    private readonly string _fingerprint;

    /// <summary>Creates a cache of at most <paramref name="capacityBytes"/> (0 disables it) for one backbone.</summary>
    public FeatureCache(long capacityBytes, string fingerprint)
    {
        CapacityBytes = capacityBytes;
        _fingerprint = fingerprint;
        if (capacityBytes > 0)
        {
            _cache = new MemoryCache(new MemoryCacheOptions { SizeLimit = capacityBytes, TrackStatistics = true, CompactionPercentage = 0.1 });
        }
    }

    public long CapacityBytes { get; }

    /// <summary>Bytes currently held (estimated, including per-entry overhead).</summary>
    public long UsedBytes => _cache?.GetCurrentStatistics()?.CurrentEstimatedSize ?? 0;

    /// <summary>The cache key of an input: SHA-256 over a kind tag, the input bytes and the fingerprint.</summary>
    public string KeyFor(string kind, ReadOnlySpan<byte> content, ReadOnlySpan<byte> extra = default)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(kind + "\0" + _fingerprint + "\0"));
        sha.AppendData(extra);
        sha.AppendData(content);
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    /// <summary>The key of the features at one cut point of an input whose key is <paramref name="inputKey"/>.</summary>
    public static string KeyForCut(string inputKey, string cutPoint) => cutPoint.Length == 0 ? inputKey : $"{inputKey}/{cutPoint}";

    public bool TryGet(string key, out float[] features)
    {
        if (_cache is not null && _cache.TryGetValue(key, out float[]? found) && found is not null)
        {
            features = found;
            return true;
        }
        features = [];
        return false;
    }

    /// <summary>Stores features; the caller must not modify the array afterwards.</summary>
    public void Set(string key, float[] features)
    {
        if (_cache is null) return;
        var size = ((long)features.Length * sizeof(float)) + EntryOverheadBytes;
        if (size > CapacityBytes) return;
        _cache.Set(key, features, new MemoryCacheEntryOptions { Size = size });
    }

    public void Dispose() => _cache?.Dispose();
}

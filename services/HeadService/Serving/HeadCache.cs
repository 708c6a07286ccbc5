using Graft.Heads.Model;
using Graft.Heads.Registry;
using Microsoft.Extensions.Options;
using TorchSharp;

namespace Graft.Heads.Serving;

/// <summary>Loaded heads keyed by (name, version), evicted least-recently-used when their total size passes
/// <see cref="HeadOptions.CacheBytes"/>. The entry just used is never evicted, so one oversized head still serves.</summary>
public sealed class HeadCache : IDisposable
{
    private readonly HeadRegistry _registry;
    private readonly HeadsTelemetry _telemetry;
    private readonly long _capacity;
    private readonly torch.Device _device;
    private readonly Lock _gate = new();
    private readonly Dictionary<(string, int), LinkedListNode<LoadedHead>> _entries = [];
    private readonly LinkedList<LoadedHead> _lru = new();
    private long _bytes;

    public HeadCache(HeadRegistry registry, HeadsTelemetry telemetry, IOptions<HeadOptions> options)
    {
        _registry = registry;
        _telemetry = telemetry;
        _capacity = options.Value.CacheBytes;
        _device = TorchRuntime.Initialise(options.Value.EffectiveTrainingThreads);
        telemetry.ObserveCache(() => Interlocked.Read(ref _bytes));
    }

    /// <summary>The loaded head for a version, loading (and verifying) it on first use.</summary>
    /// <exception cref="InvalidDataException">The version's files are corrupt or truncated.</exception>
    public LoadedHead GetOrLoad(VersionEntry entry)
    {
        var key = (entry.Name, entry.Version);
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var node) && ReferenceEquals(node.Value.Manifest, entry.Manifest))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                return node.Value;
            }
        }
        // Load outside the lock: a large head takes a while and must not block other heads.
        var manifest = entry.Manifest ?? throw new InvalidDataException(entry.Error ?? "head.json is unreadable.");
        var loaded = new LoadedHead(manifest, HeadWeights.Load(entry), _device, manifest.FineTuned ? HeadWeights.LoadTail(entry) : null);
        _telemetry.HeadLoaded();
        var evicted = new List<LoadedHead>();
        LoadedHead result;
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var existing) && ReferenceEquals(existing.Value.Manifest, manifest))
            {
                // Another caller loaded it first.
                evicted.Add(loaded);
                result = existing.Value;
            }
            else
            {
                if (existing is not null)
                {
                    Remove(existing, evicted);
                }
                _entries[key] = _lru.AddFirst(loaded);
                _bytes += loaded.SizeBytes;
                result = loaded;
                while (_bytes > _capacity && _lru.Last is { } last && !ReferenceEquals(last.Value, loaded))
                {
                    Remove(last, evicted);
                }
            }
        }
        foreach (var head in evicted)
        {
            head.Dispose();
        }
        return result;
    }

    /// <summary>Drops every loaded version of heads that no longer exist in the registry.</summary>
    public void Prune(RegistrySnapshot snapshot)
    {
        var evicted = new List<LoadedHead>();
        lock (_gate)
        {
            foreach (var node in _entries.Values.ToList())
            {
                var m = node.Value.Manifest;
                if (!snapshot.Heads.TryGetValue(m.Name, out var head) || head.Find(m.Version) is null)
                {
                    Remove(node, evicted);
                }
            }
        }
        foreach (var head in evicted)
        {
            head.Dispose();
        }
    }

    private void Remove(LinkedListNode<LoadedHead> node, List<LoadedHead> evicted)
    {
        _lru.Remove(node);
        _entries.Remove((node.Value.Manifest.Name, node.Value.Manifest.Version));
        _bytes -= node.Value.SizeBytes;
        evicted.Add(node.Value);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var head in _lru)
            {
                head.Dispose();
            }
            _lru.Clear();
            _entries.Clear();
            _bytes = 0;
        }
    }
}

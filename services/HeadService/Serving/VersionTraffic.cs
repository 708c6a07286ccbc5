using System.Collections.Concurrent;
using System.Diagnostics;

namespace Graft.Heads.Serving;

/// <summary>Per-version traffic of this replica since it started: answers by role (active, canary, shadow), their
/// latency, and how often a shadow agreed with the active version. Exported as metrics by <see cref="HeadsTelemetry"/>
/// and listed in GetHead.</summary>
public sealed class VersionTraffic(HeadsTelemetry telemetry)
{
    public const string Active = "active";
    public const string Canary = "canary";
    public const string Shadow = "shadow";

    private readonly ConcurrentDictionary<(string Head, int Version, string Role), Counters> _counters = new();

    /// <summary>One answer computed by a version in a role, taking <paramref name="elapsed"/>.</summary>
    public void Answered(string head, int version, string role, TimeSpan elapsed)
    {
        var c = _counters.GetOrAdd((head, version, role), _ => new Counters());
        Interlocked.Increment(ref c.Requests);
        Interlocked.Add(ref c.Ticks, elapsed.Ticks);
        telemetry.VersionAnswered(head, version, role, elapsed.TotalSeconds);
    }

    /// <summary>One shadow answer compared with the active version's.</summary>
    public void Compared(string head, int version, bool agreed)
    {
        var c = _counters.GetOrAdd((head, version, Shadow), _ => new Counters());
        Interlocked.Increment(ref c.Compared);
        if (agreed)
        {
            Interlocked.Increment(ref c.Agreed);
        }
        telemetry.ShadowCompared(head, version, agreed);
    }

    /// <summary>Every (version, role) this head has answered in, ordered by version then role.</summary>
    public IReadOnlyList<V1.HeadVersionTraffic> For(string head) => _counters
        .Where(kv => kv.Key.Head == head)
        .OrderBy(kv => kv.Key.Version).ThenBy(kv => kv.Key.Role, StringComparer.Ordinal)
        .Select(kv =>
        {
            var c = kv.Value;
            var requests = Interlocked.Read(ref c.Requests);
            var compared = Interlocked.Read(ref c.Compared);
            var agreed = Interlocked.Read(ref c.Agreed);
            return new V1.HeadVersionTraffic
            {
                Version = kv.Key.Version,
                Role = kv.Key.Role,
                Requests = requests,
                MeanLatencyMs = requests == 0 ? 0 : TimeSpan.FromTicks(Interlocked.Read(ref c.Ticks)).TotalMilliseconds / requests,
                ShadowCompared = compared,
                ShadowAgreed = agreed,
                ShadowAgreement = compared == 0 ? 0 : (double)agreed / compared,
            };
        })
        .ToList();

    /// <summary>Forgets a head's counters (it was deleted).</summary>
    public void Forget(string head)
    {
        foreach (var key in _counters.Keys.Where(k => k.Head == head).ToList())
        {
            _counters.TryRemove(key, out _);
        }
    }

    /// <summary>Times one answer.</summary>
    public static long Start() => Stopwatch.GetTimestamp();

    private sealed class Counters
    {
        public long Requests;
        public long Ticks;
        public long Compared;
        public long Agreed;
    }
}

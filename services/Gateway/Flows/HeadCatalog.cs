using Graft.Gateway.Downstream;
using Graft.V1;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Flows;

/// <summary>Which backbone cut point each active head takes (empty for a frozen head), so Predict can ask the backbone
/// for the final features and every needed cut in one run. Read from HeadService's ListHeads and trusted for
/// <see cref="GatewayOptions.HeadCatalogTtl"/>; this gateway's own train, activate and delete calls invalidate it at
/// once, and Predict invalidates it when HeadService says a head needs a cut the request did not carry (a change made
/// through another gateway replica).</summary>
public sealed class HeadCatalog(HeadsDownstream heads, IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly SemaphoreSlim _loading = new(1, 1);
    private volatile Snapshot? _snapshot;
    private int _generation;

    /// <summary>An active head as Predict needs to know it.</summary>
    public sealed record Entry(string Name, int Version, string CutPoint, string Fingerprint);

    /// <summary>Every version a head may answer with (the one serving each backbone, and a canary or shadow candidate),
    /// by head name.</summary>
    private sealed record Snapshot(IReadOnlyDictionary<string, IReadOnlyList<Entry>> Heads, long LoadedAt, int Generation);

    /// <summary>Forgets what is known; the next Predict asks HeadService again.</summary>
    public void Invalidate() => Interlocked.Increment(ref _generation);

    /// <summary>The cut points the named heads (all active heads when <paramref name="names"/> is empty) take from a
    /// backbone with <paramref name="fingerprint"/>, in a stable order. A head trained on another backbone is left out
    /// (HeadService refuses it anyway, and the backbone would not know its cut point); an unknown name too (HeadService's
    /// NOT_FOUND names the heads that exist).</summary>
    public async Task<IReadOnlyList<string>> CutPointsAsync(IReadOnlyCollection<string> names, string? fingerprint, CancellationToken cancellationToken)
    {
        var snapshot = await CurrentAsync(cancellationToken);
        var wanted = names.Count == 0
            ? snapshot.Heads.Values.SelectMany(e => e)
            : names.SelectMany(n => snapshot.Heads.GetValueOrDefault(n) ?? []);
        return wanted
            .Where(e => e.CutPoint.Length > 0 && (fingerprint is null || e.Fingerprint == fingerprint))
            .Select(e => e.CutPoint)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    private async Task<Snapshot> CurrentAsync(CancellationToken cancellationToken)
    {
        if (Fresh(_snapshot) is { } fresh)
        {
            return fresh;
        }
        await _loading.WaitAsync(cancellationToken);
        try
        {
            if (Fresh(_snapshot) is { } loadedMeanwhile)
            {
                return loadedMeanwhile;
            }
            var generation = Volatile.Read(ref _generation);
            var started = time.GetTimestamp();
            ListHeadsReply list;
            try
            {
                list = await heads.ListAsync(new ListHeadsRequest(), cancellationToken);
            }
            catch (Grpc.Core.RpcException) when (!cancellationToken.IsCancellationRequested)
            {
                // HeadService unreachable: go on with what was last known (or nothing) and do not ask again before the TTL,
                // so an outage costs one ListHeads per TTL, not one per Predict; HeadService's Predict fails in its own words.
                var fallback = new Snapshot(_snapshot?.Heads ?? new Dictionary<string, IReadOnlyList<Entry>>(), started, generation);
                _snapshot = fallback;
                return fallback;
            }
            var entries = new Dictionary<string, IReadOnlyList<Entry>>(StringComparer.Ordinal);
            foreach (var head in list.Heads)
            {
                // A head answers with the version serving the features' backbone (one per backbone during an upgrade),
                // or with a canary/shadow candidate: the backbone is asked for the cut points of all of them.
                var serving = head.Backbones.Select(b => b.ServingVersion).Append(head.ActiveVersion);
                if (head.Split is { CandidateVersion: > 0 } split)
                {
                    serving = serving.Append(split.CandidateVersion);
                }
                var versions = serving.Where(v => v > 0).ToHashSet();
                entries[head.Name] = head.Versions.Where(v => versions.Contains(v.Version))
                    .Select(v => new Entry(head.Name, v.Version, v.CutPoint, v.BackboneFingerprint)).ToList();
            }
            var snapshot = new Snapshot(entries, started, generation);
            _snapshot = snapshot;
            return snapshot;
        }
        finally
        {
            _loading.Release();
        }
    }

    private Snapshot? Fresh(Snapshot? snapshot) =>
        snapshot is not null && snapshot.Generation == Volatile.Read(ref _generation)
            && time.GetElapsedTime(snapshot.LoadedAt) < options.Value.HeadCatalogTtl
            ? snapshot
            : null;
}

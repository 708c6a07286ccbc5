using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Graft.Heads;

/// <summary>HeadService metrics (meter <c>Graft.Heads</c>).</summary>
public sealed class HeadsTelemetry
{
    public const string MeterName = "Graft.Heads";

    private readonly Meter _meter;
    private readonly Counter<long> _predictions;
    private readonly Counter<long> _jobs;
    private readonly Histogram<double> _trainingSeconds;
    private readonly Counter<long> _loads;
    private readonly Counter<long> _versionRequests;
    private readonly Histogram<double> _versionSeconds;
    private readonly Counter<long> _shadowComparisons;
    private readonly Counter<long> _loadFailures;
    private int _queued;
    private int _running;

    public HeadsTelemetry(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(MeterName);
        _predictions = _meter.CreateCounter<long>("graft.heads.predictions", description: "Head outputs computed, by head kind.");
        _jobs = _meter.CreateCounter<long>("graft.heads.training.jobs", description: "Training jobs finished, by kind and outcome (published, cancelled, failed, rejected).");
        _trainingSeconds = _meter.CreateHistogram<double>("graft.heads.training.duration", unit: "s", description: "Training time of published heads.");
        _versionRequests = _meter.CreateCounter<long>("graft.heads.version.requests", description: "Answers computed per head version and role (active, canary, shadow).");
        _versionSeconds = _meter.CreateHistogram<double>("graft.heads.version.duration", unit: "s", description: "Time to compute one answer, per head version and role.");
        _shadowComparisons = _meter.CreateCounter<long>("graft.heads.shadow.comparisons", description: "Shadow answers compared with the active version's, by whether they agreed.");
        _loads = _meter.CreateCounter<long>("graft.heads.loads", description: "Head versions loaded into memory.");
        _loadFailures = _meter.CreateCounter<long>("graft.heads.load_failures", description: "Head versions that failed to load (corrupt or truncated) and were skipped.");
        _meter.CreateObservableGauge("graft.heads.training.queued", () => Volatile.Read(ref _queued), description: "Training jobs waiting for a slot.");
        _meter.CreateObservableGauge("graft.heads.training.running", () => Volatile.Read(ref _running), description: "Training jobs running.");
    }

    public void Predicted(string kind) => _predictions.Add(1, new TagList { { "kind", kind } });

    public void JobFinished(string kind, string outcome, double seconds)
    {
        _jobs.Add(1, new TagList { { "kind", kind }, { "outcome", outcome } });
        if (outcome == "published")
        {
            _trainingSeconds.Record(seconds, new TagList { { "kind", kind } });
        }
    }

    /// <summary>One answer of one head version in a role (active, canary, shadow).</summary>
    public void VersionAnswered(string head, int version, string role, double seconds)
    {
        var tags = new TagList { { "head", head }, { "version", version }, { "role", role } };
        _versionRequests.Add(1, tags);
        _versionSeconds.Record(seconds, tags);
    }

    /// <summary>One shadow answer compared with the active version's.</summary>
    public void ShadowCompared(string head, int version, bool agreed)
        => _shadowComparisons.Add(1, new TagList { { "head", head }, { "version", version }, { "agreed", agreed ? "true" : "false" } });

    public void HeadLoaded() => _loads.Add(1);

    public void LoadFailed() => _loadFailures.Add(1);

    public void QueueChanged(int queued, int running)
    {
        Volatile.Write(ref _queued, queued);
        Volatile.Write(ref _running, running);
    }

    /// <summary>Publishes the loaded-head cache size as a gauge.</summary>
    public void ObserveCache(Func<long> bytes)
        => _meter.CreateObservableGauge("graft.heads.cache.bytes", bytes, unit: "By", description: "Memory held by loaded heads.");
}

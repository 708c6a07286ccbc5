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
    private readonly Counter<long> _loadFailures;
    private int _queued;
    private int _running;

    public HeadsTelemetry(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(MeterName);
        _predictions = _meter.CreateCounter<long>("graft.heads.predictions", description: "Head outputs computed, by head kind.");
        _jobs = _meter.CreateCounter<long>("graft.heads.training.jobs", description: "Training jobs finished, by kind and outcome (published, cancelled, failed, rejected).");
        _trainingSeconds = _meter.CreateHistogram<double>("graft.heads.training.duration", unit: "s", description: "Training time of published heads.");
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

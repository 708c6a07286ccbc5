using System.Diagnostics.Metrics;

namespace Graft.Backbone.Telemetry;

/// <summary>The backbone's metrics (meter <c>Graft.Backbone</c>); Prometheus shows them as <c>graft_backbone_*</c>.</summary>
public sealed class BackboneMetrics
{
    public const string MeterName = "Graft.Backbone";

    private readonly Counter<long> _inferences;
    private readonly Counter<long> _batches;
    private readonly Histogram<int> _batchSize;
    private readonly Counter<long> _cacheHits;
    private readonly Counter<long> _cacheMisses;
    private readonly Counter<long> _dropped;
    private readonly Histogram<double> _stage;

    /// <summary>Stages of one extraction, as the <c>stage</c> tag of <c>graft.backbone.stage.duration</c>.</summary>
    public static class Stages
    {
        /// <summary>Decode and preprocess one image (or check and copy one tensor), on the caller's thread.</summary>
        public const string Preprocess = "preprocess";

        /// <summary>From enqueue to the start of the run of its batch (waiting for a session and for others to join).</summary>
        public const string Queue = "queue";

        /// <summary>One model run of one batch: copy in, ONNX Runtime, copy out (recorded once per batch).</summary>
        public const string Run = "run";
    }

    public BackboneMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _inferences = meter.CreateCounter<long>("graft.backbone.inferences", description: "Inputs run through the model (cache hits excluded).");
        _batches = meter.CreateCounter<long>("graft.backbone.batches", description: "ONNX Runtime runs.");
        _batchSize = meter.CreateHistogram<int>("graft.backbone.batch.size", description: "Inputs per ONNX Runtime run.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 12, 16, 32, 64] });
        _cacheHits = meter.CreateCounter<long>("graft.backbone.cache.hits", description: "Extractions answered from the feature cache.");
        _cacheMisses = meter.CreateCounter<long>("graft.backbone.cache.misses", description: "Extractions the feature cache could not answer.");
        // Where an extraction's time goes, so a benchmark (or a dashboard) can tell the model's time from ours.
        _stage = meter.CreateHistogram<double>("graft.backbone.stage.duration", unit: "s",
            description: "Time per stage of an extraction: preprocess and queue per input, run per batch.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2] });
        _dropped = meter.CreateCounter<long>("graft.backbone.dropped", description: "Queued inputs dropped before running because the caller cancelled or its deadline passed.");
    }

    public void BatchRan(int size)
    {
        _batches.Add(1);
        _inferences.Add(size);
        _batchSize.Record(size);
    }

    /// <summary>Records <paramref name="seconds"/> spent in <paramref name="stage"/> (one of <see cref="Stages"/>).</summary>
    public void StageTook(string stage, double seconds) => _stage.Record(seconds, new KeyValuePair<string, object?>("stage", stage));

    public void CacheHit() => _cacheHits.Add(1);

    public void CacheMiss() => _cacheMisses.Add(1);

    public void Dropped(int count) => _dropped.Add(count);
}

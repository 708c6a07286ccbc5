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

    public BackboneMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _inferences = meter.CreateCounter<long>("graft.backbone.inferences", description: "Inputs run through the model (cache hits excluded).");
        _batches = meter.CreateCounter<long>("graft.backbone.batches", description: "ONNX Runtime runs.");
        _batchSize = meter.CreateHistogram<int>("graft.backbone.batch.size", description: "Inputs per ONNX Runtime run.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 12, 16, 32, 64] });
        _cacheHits = meter.CreateCounter<long>("graft.backbone.cache.hits", description: "Extractions answered from the feature cache.");
        _cacheMisses = meter.CreateCounter<long>("graft.backbone.cache.misses", description: "Extractions the feature cache could not answer.");
        _dropped = meter.CreateCounter<long>("graft.backbone.dropped", description: "Queued inputs dropped before running because the caller cancelled or its deadline passed.");
    }

    public void BatchRan(int size)
    {
        _batches.Add(1);
        _inferences.Add(size);
        _batchSize.Record(size);
    }

    public void CacheHit() => _cacheHits.Add(1);

    public void CacheMiss() => _cacheMisses.Add(1);

    public void Dropped(int count) => _dropped.Add(count);
}

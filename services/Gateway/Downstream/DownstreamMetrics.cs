using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Graft.Gateway.Downstream;

/// <summary>Calls from the gateway to its downstream services, one count per attempt, by downstream, method and status.</summary>
public sealed class DownstreamMetrics
{
    public const string MeterName = "Graft.Gateway";

    /// <summary>Status recorded when an open circuit breaker rejected the call before it reached the downstream.</summary>
    public const string CircuitOpen = "CircuitOpen";

    private readonly Counter<long> _calls;
    private readonly Histogram<double> _duration;

    public DownstreamMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _calls = meter.CreateCounter<long>("graft.gateway.downstream.calls", description: "Downstream call attempts, by downstream, method and status code.");
        _duration = meter.CreateHistogram<double>("graft.gateway.downstream.duration", unit: "s", description: "Downstream call attempt duration, by downstream and method.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] });
    }

    public void Record(string downstream, string method, string status, double seconds)
    {
        var tags = new TagList { { "downstream", downstream }, { "method", method }, { "status", status } };
        _calls.Add(1, tags);
        _duration.Record(seconds, tags);
    }
}

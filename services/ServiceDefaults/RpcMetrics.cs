using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Graft.ServiceDefaults;

/// <summary>Server-side gRPC request counts and latency by method and status code.</summary>
public sealed class RpcMetrics
{
    public const string MeterName = "Graft.Rpc";

    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;

    public RpcMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _requests = meter.CreateCounter<long>("graft.rpc.server.requests", description: "gRPC calls handled, by method and status code.");
        _duration = meter.CreateHistogram<double>("graft.rpc.server.duration", unit: "s", description: "gRPC call duration, by method and status code.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] });
    }

    public void Record(string method, Grpc.Core.StatusCode code, double seconds)
    {
        var tags = new TagList { { "rpc.method", method }, { "rpc.grpc.status_code", code.ToString() } };
        _requests.Add(1, tags);
        _duration.Record(seconds, tags);
    }
}

namespace Graft.Bench.Speed;

/// <summary>Throughput and latency percentiles of one measured run.</summary>
public sealed record LatencyStats(int Count, double Seconds, double P50Ms, double P95Ms, double P99Ms, double MeanMs)
{
    /// <summary>Items per second (images, requests or rows, as the row says).</summary>
    public double Throughput => Count / Seconds;

    public static LatencyStats From(IReadOnlyList<double> latenciesMs, double seconds, int count)
    {
        var sorted = latenciesMs.Order().ToArray();
        return new LatencyStats(count, seconds, Percentile(sorted, 0.50), Percentile(sorted, 0.95),
            Percentile(sorted, 0.99), sorted.Length == 0 ? 0 : sorted.Average());
    }

    // Nearest-rank percentile.
    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}

using System.Diagnostics;

namespace Graft.Bench.Speed;

/// <summary>
/// Closed-loop load: <c>concurrency</c> callers, each sending its next request as soon as the previous one
/// answered, until <c>requests</c> have been sent. Every request gets a fresh index (so a fresh image: no cache hits).
/// </summary>
public static class LoadRunner
{
    /// <param name="call">Sends request number <c>i</c>; returns true when the reply came from a cache.</param>
    public static async Task<(LatencyStats Stats, int CacheHits)> RunAsync(
        int concurrency, int requests, Func<int, Task<bool>> call)
    {
        var (stats, cacheHits, _) = await RunRecordedAsync(concurrency, requests, call);
        return (stats, cacheHits);
    }

    /// <summary>As <see cref="RunAsync"/>, and also every call's latency (ms, by request index), so that interleaved
    /// rounds can be pooled into one set of percentiles.</summary>
    public static async Task<(LatencyStats Stats, int CacheHits, double[] LatenciesMs)> RunRecordedAsync(
        int concurrency, int requests, Func<int, Task<bool>> call)
    {
        var latencies = new double[requests];
        var next = -1;
        var cacheHits = 0;
        var total = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests)
            {
                var start = Stopwatch.GetTimestamp();
                if (await call(i)) Interlocked.Increment(ref cacheHits);
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        })).ToArray();
        await Task.WhenAll(workers);
        total.Stop();
        return (LatencyStats.From(latencies, total.Elapsed.TotalSeconds, requests), cacheHits, latencies);
    }
}

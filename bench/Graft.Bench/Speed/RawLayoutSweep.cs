using System.Diagnostics;
using Graft.Bench.Data;
using Graft.Bench.Onnx;

namespace Graft.Bench.Speed;

/// <summary>One raw ONNX Runtime layout: <see cref="Sessions"/> sessions of <see cref="Threads"/> intra-op threads each,
/// fed in parallel (Threads 0 = ONNX Runtime's own default).</summary>
public sealed record RawLayout(int Sessions, int Threads, bool Spinning)
{
    public string Name => Threads == 0 ? "ORT default threads" : $"{Sessions} x {Threads} thread{(Threads == 1 ? "" : "s")}{(Spinning ? ", spinning" : "")}";
}

/// <summary>The measurement of one layout: batch-16 throughput (all sessions busy) and a lone batch-1 run's latency.</summary>
public sealed record RawLayoutResult(RawLayout Layout, double Batch16ImagesPerSecond, double Batch1P50Ms, double Batch1ImagesPerSecond);

/// <summary>Finds the best raw layout for this machine: each candidate measured in interleaved rounds so load drift hits
/// all alike. The best batch-16 throughput becomes the baseline every ratio divides by.</summary>
public static class RawLayoutSweep
{
    /// <summary>Candidates for <paramref name="cores"/>: one session using every core (spinning or not), one single-thread
    /// session per core, pairs of threads when there are at least 4 cores, and ORT's default for reference.</summary>
    public static IReadOnlyList<RawLayout> Candidates(int cores)
    {
        var list = new List<RawLayout> { new(1, cores, false), new(1, cores, true) };
        if (cores > 1) list.Add(new(cores, 1, false));
        if (cores >= 4) list.Add(new(cores / 2, 2, false));
        list.Add(new(1, 0, true));
        return list.Distinct().ToList();
    }

    public static List<RawLayoutResult> Run(IReadOnlyList<FashionImage> pool, int imagesPerLayout, int rounds, Func<RawLayout, IReadOnlyList<ResNet18>> open, Action<string> log)
    {
        var layouts = Candidates(Environment.ProcessorCount);
        var opened = layouts.ToDictionary(l => l, open);
        try
        {
            var b16 = layouts.ToDictionary(l => l, _ => new List<(int Images, double Seconds)>());
            var b1 = layouts.ToDictionary(l => l, _ => new List<double>());
            for (var round = 0; round < rounds; round++)
            {
                foreach (var layout in layouts)
                {
                    b16[layout].Add(Batch16(opened[layout], pool, imagesPerLayout / rounds));
                    b1[layout].AddRange(Batch1(opened[layout][0], pool, Math.Max(3, imagesPerLayout / rounds / 4)));
                }
            }
            var results = layouts.Select(l =>
            {
                var stats = LatencyStats.From(b1[l], b1[l].Sum() / 1000, b1[l].Count);
                return new RawLayoutResult(l, b16[l].Sum(x => x.Images) / b16[l].Sum(x => x.Seconds), stats.P50Ms, 1000 / stats.P50Ms);
            }).ToList();
            foreach (var r in results) log($"  layout {r.Layout.Name}: batch 16 {r.Batch16ImagesPerSecond:F1} img/s, batch 1 p50 {r.Batch1P50Ms:F1} ms");
            return results;
        }
        finally
        {
            foreach (var models in opened.Values) foreach (var m in models) m.Dispose();
        }
    }

    /// <summary>Every session runs batch-16 runs on its own thread until together they have done about <paramref name="images"/>.</summary>
    public static (int Images, double Seconds) Batch16(IReadOnlyList<ResNet18> sessions, IReadOnlyList<FashionImage> pool, int images)
    {
        const int batch = 16;
        var input = Input(sessions[0], pool, batch);
        foreach (var s in sessions) s.Run(input, batch); // warm-up
        var runsEach = Math.Max(1, images / batch / sessions.Count);
        var watch = Stopwatch.StartNew();
        Parallel.For(0, sessions.Count, new ParallelOptions { MaxDegreeOfParallelism = sessions.Count }, i =>
        {
            for (var r = 0; r < runsEach; r++) sessions[i].Run(input, batch);
        });
        return (runsEach * batch * sessions.Count, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Latencies (ms) of lone batch-1 runs on one session.</summary>
    public static List<double> Batch1(ResNet18 session, IReadOnlyList<FashionImage> pool, int runs)
    {
        var input = Input(session, pool, 1);
        session.Run(input, 1);
        var latencies = new List<double>(runs);
        for (var r = 0; r < runs; r++)
        {
            var start = Stopwatch.GetTimestamp();
            session.Run(input, 1);
            latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        return latencies;
    }

    private static float[] Input(ResNet18 model, IReadOnlyList<FashionImage> pool, int batch)
    {
        const int plane = 3 * ResNet18.ImageSide * ResNet18.ImageSide;
        var input = new float[batch * plane];
        for (var b = 0; b < batch; b++) model.Preprocess(pool[b % pool.Count].Pixels, input.AsSpan(b * plane, plane));
        return input;
    }
}

using System.Diagnostics;
using Graft.Bench.Data;
using Graft.Bench.Onnx;

namespace Graft.Bench.Speed;

/// <summary>Row 1: the limit. ResNet18 in-process, on inputs already preprocessed, batch 1 and batch 16.</summary>
public static class RawOrtBench
{
    /// <summary>Images per second of <c>session.Run</c> alone, after warm-up, over about <paramref name="images"/> images.</summary>
    public static LatencyStats Measure(ResNet18 model, IReadOnlyList<FashionImage> pool, int batch, int images)
    {
        const int plane = 3 * ResNet18.ImageSide * ResNet18.ImageSide;
        var input = new float[batch * plane];
        for (var b = 0; b < batch; b++) model.Preprocess(pool[b % pool.Count].Pixels, input.AsSpan(b * plane, plane));

        model.Run(input, batch); // warm-up: first run allocates and plans
        model.Run(input, batch);
        var runs = Math.Max(3, images / batch);
        var latencies = new List<double>(runs);
        var total = Stopwatch.StartNew();
        for (var r = 0; r < runs; r++)
        {
            var start = Stopwatch.GetTimestamp();
            model.Run(input, batch);
            latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        return LatencyStats.From(latencies, total.Elapsed.TotalSeconds, runs * batch);
    }

    /// <summary>Largest absolute difference between batch-16 and batch-1 features: the symbolic batch must not change results.</summary>
    public static double BatchConsistency(ResNet18 model, IReadOnlyList<FashionImage> images)
    {
        const int plane = 3 * ResNet18.ImageSide * ResNet18.ImageSide;
        var n = Math.Min(4, images.Count);
        var input = new float[n * plane];
        for (var b = 0; b < n; b++) model.Preprocess(images[b].Pixels, input.AsSpan(b * plane, plane));
        var batched = model.Run(input, n);
        var worst = 0.0;
        for (var b = 0; b < n; b++)
        {
            var single = model.Run(input.AsSpan(b * plane, plane).ToArray(), 1);
            for (var k = 0; k < single.Length; k++)
                worst = Math.Max(worst, Math.Abs(single[k] - batched[b * ResNet18.FeatureDimension + k]));
        }
        return worst;
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using Graft.Backbone.Batching;
using Graft.Backbone.Caching;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;

namespace Graft.Backbone;

/// <summary>Features of one input, and whether the cache supplied them all.</summary>
/// <param name="Values">The final features.</param>
/// <param name="CacheHit">True when no model run was needed.</param>
/// <param name="CutValues">The activations at each requested earlier cut point, in request order.</param>
public sealed record Features(float[] Values, bool CacheHit, IReadOnlyList<float[]> CutValues)
{
    public Features(float[] values, bool cacheHit) : this(values, cacheHit, []) { }
}

/// <summary>A backbone as <c>Describe</c> reports it.</summary>
public sealed record BackboneDescription(
    string Name, string Fingerprint, IReadOnlyList<long> InputShape, int FeatureDimension, string ExecutionProvider,
    string CutTensor, string Preprocessing, int MaxBatchSize, TimeSpan MaxQueueDelay, long CacheCapacityBytes, long CacheUsedBytes,
    IReadOnlyList<CutPointOutput> CutPoints, ExecutionLayout Layout, string Precision);

/// <summary>The served graph and what an exporter needs to put the preprocessing in front of it.</summary>
public sealed record GraphExport(ServedModel Served, BackboneProfile Profile, ReadOnlyMemory<float> MeanImage, IReadOnlyList<long> InputShape, int FeatureDimension);

/// <summary>The data flow of one extraction: cache lookup → decode and preprocess (<see cref="Imaging"/>) →
/// dynamic batch (<see cref="Batching"/>) → model run (<see cref="Model"/>) → cache store (<see cref="Caching"/>).</summary>
public sealed class FeatureExtractor(BackboneModel model, Preprocessor preprocessor, DynamicBatcher batcher, FeatureCache cache, BackboneMetrics metrics)
{
    /// <summary>The fingerprint of the backbone every feature vector comes from.</summary>
    public string Fingerprint => model.Fingerprint;

    /// <summary>How many streamed items to work on at once: twice a batch keeps the batcher fed.</summary>
    public int StreamConcurrency => Math.Max(2, batcher.MaxBatchSize * 2);

    /// <summary>What the backbone is and how it runs, for <c>Describe</c>.</summary>
    public BackboneDescription Describe() => new(
        model.Profile.Name, model.Fingerprint, model.InputShape, model.FeatureDimension, model.ExecutionProvider,
        model.Cut.CutTensor, model.Profile.DescribePreprocessing(), batcher.MaxBatchSize, batcher.MaxQueueDelay,
        cache.CapacityBytes, cache.UsedBytes, model.CutPoints, model.Layout, model.Precision);

    /// <summary>The graph as the session runs it, rebuilt from the model file, with the preprocessing as data.</summary>
    /// <exception cref="InvalidOperationException">The model file changed since start.</exception>
    public GraphExport ExportGraph() => new(model.ExportServedGraph(), model.Profile, preprocessor.MeanImage, model.InputShape, model.FeatureDimension);

    /// <summary>Runs one warm-up batch through the model; returns the backbone and how long that run took.</summary>
    public (BackboneDescription Backbone, TimeSpan WarmUp) WarmUp() => (Describe(), model.WarmUp());

    /// <summary>Extracts the features of encoded image bytes.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image.</exception>
    public Task<Features> ExtractImageAsync(ReadOnlyMemory<byte> image, CancellationToken cancellationToken) =>
        ExtractImageAsync(image, [], cancellationToken);

    /// <summary>Extracts the final features of encoded image bytes and the activations at <paramref name="cutPoints"/>, in one model run.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image, or a cut point is unknown.</exception>
    public Task<Features> ExtractImageAsync(ReadOnlyMemory<byte> image, IReadOnlyList<string> cutPoints, CancellationToken cancellationToken) =>
        ExtractImageAsync(image, cutPoints, AugmentationView.None, cancellationToken);

    /// <summary>Extracts the features of one view of encoded image bytes (<see cref="ImageAugmenter"/>; view 0 is the image
    /// as sent) and the activations at <paramref name="cutPoints"/>, in one model run. Each view has its own cache entry.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image, a cut point is unknown, or the view is out of range.</exception>
    public async Task<Features> ExtractImageAsync(ReadOnlyMemory<byte> image, IReadOnlyList<string> cutPoints, AugmentationView view, CancellationToken cancellationToken)
    {
        CheckView(view);
        var outputs = ResolveCutPoints(cutPoints);
        // View 0 keeps the key it always had, so existing cache entries and callers are unaffected.
        var key = view.IsIdentity
            ? cache.KeyFor("image", image.Span)
            : cache.KeyFor("image", image.Span, System.Text.Encoding.UTF8.GetBytes($"augmentation\0{view.View}\0{view.Seed}"));
        if (TryHit(key, cutPoints) is { } hit) return hit;
        // Announced before the decode, so a batch forming meanwhile waits for this input rather than running without it.
        using var arrival = batcher.Announce();
        var started = Stopwatch.GetTimestamp();
        var input = preprocessor.Preprocess(image.Span, view);
        metrics.StageTook(BackboneMetrics.Stages.Preprocess, Stopwatch.GetElapsedTime(started).TotalSeconds);
        return await RunAsync(key, input, cutPoints, outputs, arrival, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Extracts the features of a preprocessed input tensor given without its batch dimension.</summary>
    /// <exception cref="InputRejectedException">Wrong shape, wrong value count, or a NaN/Inf value.</exception>
    public Task<Features> ExtractTensorAsync(IReadOnlyList<long> shape, ReadOnlyMemory<float> data, CancellationToken cancellationToken) =>
        ExtractTensorAsync(shape, data, [], cancellationToken);

    /// <summary>Extracts the features of a preprocessed input tensor and the activations at <paramref name="cutPoints"/>, in one model run.</summary>
    /// <exception cref="InputRejectedException">Wrong shape, wrong value count, a NaN/Inf value, or an unknown cut point.</exception>
    public async Task<Features> ExtractTensorAsync(IReadOnlyList<long> shape, ReadOnlyMemory<float> data, IReadOnlyList<string> cutPoints, CancellationToken cancellationToken)
    {
        var outputs = ResolveCutPoints(cutPoints);
        var expected = model.InputShape;
        var accepted = $"[{string.Join(", ", expected)}] (without the batch dimension) with {model.InputLength} float32 values";
        if (!shape.SequenceEqual(expected))
        {
            throw new InputRejectedException($"Tensor shape [{string.Join(", ", shape)}] does not match the backbone input; send shape {accepted}.");
        }
        if (data.Length != model.InputLength)
        {
            throw new InputRejectedException($"Tensor has {data.Length} values but its shape needs {model.InputLength}; send shape {accepted}.");
        }
        var values = data.Span;
        for (var i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new InputRejectedException($"Tensor value at index {i} is {values[i]}; every value must be a finite number (no NaN or Infinity).");
            }
        }
        var key = cache.KeyFor("tensor", MemoryMarshal.AsBytes(values), MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(shape.ToList())));
        if (TryHit(key, cutPoints) is { } hit) return hit;
        return await RunAsync(key, values.ToArray(), cutPoints, outputs, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Refuses a view number outside 0..<see cref="AugmentationView.MaxView"/>, naming the request field.</summary>
    public static void CheckView(AugmentationView view)
    {
        if (view.View is < 0 or > AugmentationView.MaxView)
        {
            throw new InputRejectedException($"augmentation.view is {view.View}; it must be in [0, {AugmentationView.MaxView}] (0 = the image as sent, k >= 1 = the k-th seeded random view).");
        }
    }

    /// <summary>The cut point called <paramref name="name"/>.</summary>
    /// <exception cref="InputRejectedException">The backbone offers no such cut point (the message names those it offers).</exception>
    public CutPointOutput CutPoint(string name) => model.FindCutPoint(name) ?? throw new InputRejectedException(model.CutPoints.Count == 0
        ? $"Cut point '{name}' is unknown: backbone '{model.Profile.Name}' offers no earlier cut points; ask for the final features only."
        : $"Cut point '{name}' is unknown; backbone '{model.Profile.Name}' offers {string.Join(", ", model.CutPoints.Select(c => c.Name))}.");

    /// <summary>Model output indexes for the final features followed by each named cut point.</summary>
    private List<int> ResolveCutPoints(IReadOnlyList<string> cutPoints)
    {
        var outputs = new List<int>(cutPoints.Count + 1) { 0 };
        foreach (var name in cutPoints) outputs.Add(CutPoint(name).Output);
        return outputs;
    }

    /// <summary>A hit only when the final features and every requested cut are cached (each cut has its own entry).</summary>
    private Features? TryHit(string key, IReadOnlyList<string> cutPoints)
    {
        if (cache.TryGet(key, out var cached))
        {
            var cuts = new float[cutPoints.Count][];
            var all = true;
            for (var k = 0; k < cutPoints.Count && all; k++)
            {
                all = cache.TryGet(FeatureCache.KeyForCut(key, cutPoints[k]), out cuts[k]);
            }
            if (all)
            {
                metrics.CacheHit();
                return new Features(cached, CacheHit: true, cuts);
            }
        }
        metrics.CacheMiss();
        return null;
    }

    private async Task<Features> RunAsync(string key, float[] input, IReadOnlyList<string> cutPoints, IReadOnlyList<int> outputs,
        DynamicBatcher.Arrival? arrival, CancellationToken cancellationToken)
    {
        var values = await batcher.EnqueueAsync(input, outputs, cancellationToken, arrival).ConfigureAwait(false);
        cache.Set(key, values[0]);
        for (var k = 0; k < cutPoints.Count; k++) cache.Set(FeatureCache.KeyForCut(key, cutPoints[k]), values[k + 1]);
        return new Features(values[0], CacheHit: false, values[1..]);
    }
}

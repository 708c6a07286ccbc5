using System.Runtime.InteropServices;
using Graft.Backbone.Batching;
using Graft.Backbone.Caching;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;

namespace Graft.Backbone;

/// <summary>Features of one input, and whether the cache supplied them.</summary>
public sealed record Features(float[] Values, bool CacheHit);

/// <summary>A backbone as <c>Describe</c> reports it.</summary>
public sealed record BackboneDescription(
    string Name, string Fingerprint, IReadOnlyList<long> InputShape, int FeatureDimension, string ExecutionProvider,
    string CutTensor, string Preprocessing, int MaxBatchSize, TimeSpan MaxQueueDelay, long CacheCapacityBytes, long CacheUsedBytes,
    ExecutionLayout Layout, string Precision);

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
        cache.CapacityBytes, cache.UsedBytes, model.Layout, model.Precision);

    /// <summary>Runs one warm-up batch through the model; returns the backbone and how long that run took.</summary>
    public (BackboneDescription Backbone, TimeSpan WarmUp) WarmUp() => (Describe(), model.WarmUp());

    /// <summary>Extracts the features of encoded image bytes.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image.</exception>
    public async Task<Features> ExtractImageAsync(ReadOnlyMemory<byte> image, CancellationToken cancellationToken)
    {
        var key = cache.KeyFor("image", image.Span);
        if (TryHit(key) is { } hit) return hit;
        var input = preprocessor.Preprocess(image.Span);
        return await RunAsync(key, input, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Extracts the features of a preprocessed input tensor given without its batch dimension.</summary>
    /// <exception cref="InputRejectedException">Wrong shape, wrong value count, or a NaN/Inf value.</exception>
    public async Task<Features> ExtractTensorAsync(IReadOnlyList<long> shape, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
    {
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
        if (TryHit(key) is { } hit) return hit;
        return await RunAsync(key, values.ToArray(), cancellationToken).ConfigureAwait(false);
    }

    private Features? TryHit(string key)
    {
        if (cache.TryGet(key, out var cached))
        {
            metrics.CacheHit();
            return new Features(cached, CacheHit: true);
        }
        metrics.CacheMiss();
        return null;
    }

    private async Task<Features> RunAsync(string key, float[] input, CancellationToken cancellationToken)
    {
        var features = await batcher.EnqueueAsync(input, cancellationToken).ConfigureAwait(false);
        cache.Set(key, features);
        return new Features(features, CacheHit: false);
    }
}

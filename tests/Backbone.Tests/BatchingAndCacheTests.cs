using Google.Protobuf;
using Graft.Backbone.Batching;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Backbone.Tests;

[Collection(BackboneCollection.Name)]
public sealed class BatchingAndCacheTests(DefaultBackbone cached, UncachedBackbone uncached)
{
    private const double Tolerance = 1e-4;

    [Fact]
    public void An_image_gives_the_same_features_alone_and_inside_a_batch_of_16()
    {
        var services = uncached.Factory.Services;
        var model = services.GetRequiredService<BackboneModel>();
        var preprocessor = services.GetRequiredService<Imaging.Preprocessor>();
        var inputs = SampleImages.Load("test").Take(16).Select(s => preprocessor.Preprocess(File.ReadAllBytes(s.Path))).ToList();

        var batched = model.Run(inputs);

        for (var i = 0; i < inputs.Count; i += 5)
        {
            var alone = model.Run([inputs[i]])[0];
            Assert.Equal(alone.Length, batched[i].Length);
            var worst = alone.Zip(batched[i], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= Tolerance, $"image {i}: largest difference {worst} exceeds {Tolerance}");
        }
    }

    [Fact]
    public async Task Concurrent_callers_are_run_together_in_batches_with_the_same_features_as_alone()
    {
        var model = uncached.Factory.Services.GetRequiredService<BackboneModel>();
        var images = SampleImages.Load("train").Where((_, i) => i % 7 == 0).Take(16).Select(s => File.ReadAllBytes(s.Path)).ToList();
        var inferencesBefore = await uncached.Factory.ReadMetricAsync("graft_backbone_inferences_total");
        var batchesBefore = await uncached.Factory.ReadMetricAsync("graft_backbone_batches_total");

        var replies = await Task.WhenAll(images.Select(image =>
            Task.Run(async () => await uncached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) }))));

        var inferences = await uncached.Factory.ReadMetricAsync("graft_backbone_inferences_total") - inferencesBefore;
        var batches = await uncached.Factory.ReadMetricAsync("graft_backbone_batches_total") - batchesBefore;
        Assert.Equal(16, inferences);
        Assert.True(batches < 16, $"16 concurrent callers took {batches} ONNX Runtime runs; expected fewer (batched)");
        var preprocessor = uncached.Factory.Services.GetRequiredService<Imaging.Preprocessor>();
        for (var i = 0; i < images.Count; i++)
        {
            var alone = model.Run([preprocessor.Preprocess(images[i])])[0];
            var worst = alone.Zip(replies[i].Features, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= Tolerance, $"caller {i}: largest difference {worst} exceeds {Tolerance}");
        }
    }

    [Fact]
    public async Task The_second_extraction_of_the_same_image_is_a_cache_hit_and_runs_no_model()
    {
        using var bitmap = Images.Solid(31, 29, new SkiaSharp.SKColor((byte)Random.Shared.Next(256), 40, 200));
        var image = ByteString.CopyFrom(Images.Encode(bitmap));
        var first = await cached.Client.ExtractAsync(new ExtractRequest { Image = image });
        var inferences = await cached.Factory.ReadMetricAsync("graft_backbone_inferences_total");
        var hits = await cached.Factory.ReadMetricAsync("graft_backbone_cache_hits_total");

        var second = await cached.Client.ExtractAsync(new ExtractRequest { Image = image });

        Assert.False(first.CacheHit);
        Assert.True(second.CacheHit);
        Assert.Equal(first.Features, second.Features);
        Assert.Equal(inferences, await cached.Factory.ReadMetricAsync("graft_backbone_inferences_total"));
        Assert.Equal(hits + 1, await cached.Factory.ReadMetricAsync("graft_backbone_cache_hits_total"));
        Assert.True((await cached.Client.DescribeAsync(new DescribeBackboneRequest())).CacheUsedBytes >= 512 * sizeof(float));
    }

    [Fact]
    public async Task A_request_cancelled_while_queued_is_dropped_before_it_runs()
    {
        // The batcher over the real model, with a gate in front of the run so a second request is surely queued
        // while the first runs.
        var model = uncached.Factory.Services.GetRequiredService<BackboneModel>();
        var metrics = uncached.Factory.Services.GetRequiredService<BackboneMetrics>();
        using var firstRunning = new SemaphoreSlim(0);
        using var release = new SemaphoreSlim(0);
        var ran = new List<float[]>();
        float[][] Run(IReadOnlyList<float[]> inputs)
        {
            lock (ran) ran.AddRange(inputs);
            firstRunning.Release();
            release.Wait();
            return model.Run(inputs);
        }
        await using var batcher = new DynamicBatcher(Run, 16, TimeSpan.FromMilliseconds(2), metrics, NullLogger.Instance);
        var first = new float[model.InputLength];
        var second = new float[model.InputLength];
        using var cancel = new CancellationTokenSource();

        var firstTask = batcher.EnqueueAsync(first, CancellationToken.None);
        Assert.True(await firstRunning.WaitAsync(TimeSpan.FromSeconds(60)));
        var secondTask = batcher.EnqueueAsync(second, cancel.Token);
        await cancel.CancelAsync();
        release.Release(10);

        await firstTask;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => secondTask);
        var third = await batcher.EnqueueAsync(new float[model.InputLength], CancellationToken.None);
        Assert.Equal(512, third.Length);
        lock (ran)
        {
            Assert.DoesNotContain(ran, input => ReferenceEquals(input, second));
            Assert.Equal(2, ran.Count);
        }
    }

    [Fact]
    public async Task A_call_whose_deadline_has_passed_is_refused_and_the_service_keeps_serving()
    {
        var image = ByteString.CopyFrom(File.ReadAllBytes(SampleImages.Load("test")[3].Path));

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await uncached.Client.ExtractAsync(new ExtractRequest { Image = image }, deadline: DateTime.UtcNow.AddMilliseconds(-1)));
        var reply = await uncached.Client.ExtractAsync(new ExtractRequest { Image = image });

        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.Equal(512, reply.Dimension);
    }
}

using Google.Protobuf;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using SkiaSharp;
using Xunit.Abstractions;

namespace Graft.Backbone.Tests;

/// <summary>Shows the embedded ResNet18 and its preprocessing are right on real images.</summary>
[Collection(BackboneCollection.Name)]
public sealed class FeatureQualityTests(DefaultBackbone backbone, ITestOutputHelper output)
{
    [Fact]
    public async Task An_image_is_closer_to_its_resized_and_cropped_copies_than_to_any_other_image()
    {
        // One image per class, so "other" images are genuinely different.
        var originals = SampleImages.Load("test").GroupBy(s => s.Label).Select(g => File.ReadAllBytes(g.First().Path)).ToList();
        var features = await ExtractAllAsync(originals);

        foreach (var (original, index) in originals.Select((o, i) => (o, i)))
        {
            var resized = Images.Transform(original, b => Images.Resize(b, 34, 34));
            var cropped = Images.Transform(original, b => Images.Crop(b, new SKRectI(1, 1, 27, 27)));
            var copies = await ExtractAllAsync([resized, cropped]);
            var nearestOther = features.Where((_, j) => j != index).Min(f => Images.CosineDistance(features[index], f));

            foreach (var copy in copies)
            {
                Assert.True(Images.CosineDistance(features[index], copy) < nearestOther,
                    $"image {index}: copy distance {Images.CosineDistance(features[index], copy):F4} is not below the nearest other image {nearestOther:F4}");
            }
        }
    }

    [Fact]
    public async Task Nearest_centroid_on_features_separates_the_fashion_classes_far_above_chance()
    {
        // Ten training images per class keep the run short; the centroids are already clear.
        var train = SampleImages.Load("train").GroupBy(s => s.Label).SelectMany(g => g.Take(10)).ToList();
        var test = SampleImages.Load("test");
        var trainFeatures = await ExtractAllAsync(train.Select(s => File.ReadAllBytes(s.Path)).ToList());
        var testFeatures = await ExtractAllAsync(test.Select(s => File.ReadAllBytes(s.Path)).ToList());
        var centroids = train.Select((s, i) => (s.Label, Features: trainFeatures[i]))
            .GroupBy(x => x.Label)
            .ToDictionary(g => g.Key, g => Enumerable.Range(0, 512).Select(d => g.Average(x => x.Features[d])).Select(v => (float)v).ToArray());

        var correct = test.Select((s, i) => centroids.MinBy(c => Images.CosineDistance(testFeatures[i], c.Value)).Key == s.Label).Count(ok => ok);
        var accuracy = (double)correct / test.Count;

        output.WriteLine($"nearest-centroid accuracy {accuracy:P1} ({correct}/{test.Count})");
        // Ten classes: chance is 10 %. Frozen ImageNet features on Fashion-MNIST give far more.
        Assert.True(accuracy >= 0.6, $"nearest-centroid accuracy {accuracy:P0} on {test.Count} test images");
    }

    /// <summary>Bulk extraction through ExtractStream, as training clients do.</summary>
    private async Task<List<float[]>> ExtractAllAsync(IReadOnlyList<byte[]> images)
    {
        using var call = backbone.Client.ExtractStream();
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < images.Count; i++)
            {
                await call.RequestStream.WriteAsync(new ExtractStreamRequest { Id = i.ToString(), Request = new ExtractRequest { Image = ByteString.CopyFrom(images[i]) } });
            }
            await call.RequestStream.CompleteAsync();
        });
        var results = new List<float[]>();
        await foreach (var reply in call.ResponseStream.ReadAllAsync())
        {
            Assert.Equal(results.Count.ToString(), reply.Id);
            Assert.Equal(0, reply.ErrorCode);
            results.Add([.. reply.Reply.Features]);
        }
        await sending;
        Assert.Equal(images.Count, results.Count);
        return results;
    }
}

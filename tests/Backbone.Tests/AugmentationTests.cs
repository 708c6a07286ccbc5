using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Backbone.Tests;

/// <summary>Training-time augmentation in Extract: seeded views, their cache keys, and the refusals.</summary>
[Collection(BackboneCollection.Name)]
public sealed class AugmentationTests(DefaultBackbone cached, UncachedBackbone uncached)
{
    private static ExtractRequest Request(byte[] image, int view, long seed, params string[] cutPoints) => new()
    {
        Image = ByteString.CopyFrom(image),
        Augmentation = new Augmentation { View = view, Seed = seed },
        CutPoints = { cutPoints },
    };

    [Fact]
    public async Task The_same_view_and_seed_give_bit_identical_features_and_cut_activations_while_other_views_and_seeds_differ()
    {
        var samples = SampleImages.Load("test");
        var image = File.ReadAllBytes(samples[5].Path);
        var other = File.ReadAllBytes(samples.First(s => s.Label != samples[5].Label).Path);

        // Uncached: every answer below is a model run, so "identical" means the transform and the run are deterministic.
        var first = await uncached.Client.ExtractAsync(Request(image, 1, 7, CutPointFinder.LastBlock));
        var again = await uncached.Client.ExtractAsync(Request(image, 1, 7, CutPointFinder.LastBlock));
        var view2 = await uncached.Client.ExtractAsync(Request(image, 2, 7, CutPointFinder.LastBlock));
        var seed8 = await uncached.Client.ExtractAsync(Request(image, 1, 8, CutPointFinder.LastBlock));
        var view0 = await uncached.Client.ExtractAsync(Request(image, 0, 7));
        var plain = await uncached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });
        var otherImage = await uncached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(other) });

        Assert.False(again.CacheHit);
        Assert.Equal(first.Features, again.Features);
        Assert.Equal(first.CutFeatures[0].Values, again.CutFeatures[0].Values);
        Assert.Equal([512L, 7, 7], first.CutFeatures[0].Shape);
        Assert.NotEqual(first.Features, view2.Features);
        Assert.NotEqual(first.Features, seed8.Features);
        Assert.NotEqual(first.Features, plain.Features);
        Assert.Equal(plain.Features, view0.Features);
        // A view is a small change of the same picture: nearer its own image than the image of another class is.
        var ownDistance = Images.CosineDistance(first.Features, plain.Features);
        var otherDistance = Images.CosineDistance(otherImage.Features, plain.Features);
        Assert.True(ownDistance < otherDistance, $"view 1 is {ownDistance:F3} from its image, another class's image {otherDistance:F3}");
    }

    [Fact]
    public async Task The_cache_keys_by_view_and_seed_and_view_0_keeps_the_key_of_the_plain_image()
    {
        var image = File.ReadAllBytes(SampleImages.Load("test")[17].Path);

        var plain = await cached.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });
        var view0 = await cached.Client.ExtractAsync(Request(image, 0, 99));
        var view1 = await cached.Client.ExtractAsync(Request(image, 1, 5));
        var view1Again = await cached.Client.ExtractAsync(Request(image, 1, 5));
        var otherSeed = await cached.Client.ExtractAsync(Request(image, 1, 6));
        var withCut = await cached.Client.ExtractAsync(Request(image, 1, 5, CutPointFinder.LastStage));
        var withCutAgain = await cached.Client.ExtractAsync(Request(image, 1, 5, CutPointFinder.LastStage));

        // The plain image may already be cached by another test of the shared fixture; after `plain` it surely is.
        Assert.True(view0.CacheHit);
        Assert.Equal(plain.Features, view0.Features);
        Assert.False(view1.CacheHit);
        Assert.True(view1Again.CacheHit);
        Assert.Equal(view1.Features, view1Again.Features);
        Assert.False(otherSeed.CacheHit);
        Assert.False(withCut.CacheHit); // the view's final features are cached, its last-stage activations were not
        Assert.True(withCutAgain.CacheHit);
        Assert.Equal(view1.Features, withCut.Features);
        Assert.Equal(withCut.CutFeatures[0].Values, withCutAgain.CutFeatures[0].Values);
    }

    [Fact]
    public async Task A_tensor_input_with_a_view_is_refused_because_augmentation_transforms_images()
    {
        var tensor = new V1.Tensor();
        tensor.Shape.AddRange([3L, 224, 224]);
        tensor.Data.AddRange(new float[3 * 224 * 224]);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await cached.Client.ExtractAsync(
            new ExtractRequest { Tensor = tensor, Augmentation = new Augmentation { View = 1, Seed = 3 } }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("augmentation.view", e.Status.Detail);
        Assert.Contains("tensor", e.Status.Detail);
        // View 0 is no augmentation: the same tensor is accepted.
        var plain = await cached.Client.ExtractAsync(new ExtractRequest { Tensor = tensor, Augmentation = new Augmentation { View = 0, Seed = 3 } });
        Assert.Equal(512, plain.Dimension);
    }

    [Theory]
    [InlineData(17)]
    [InlineData(-1)]
    public async Task A_view_outside_0_to_16_is_refused_naming_the_field(int view)
    {
        var image = File.ReadAllBytes(SampleImages.Load("test")[0].Path);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await cached.Client.ExtractAsync(Request(image, view, 1)));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains($"augmentation.view is {view}", e.Status.Detail);
        Assert.Contains("[0, 16]", e.Status.Detail);
    }

    [Fact]
    public void Views_draw_flips_crops_and_rotations_within_the_documented_ranges()
    {
        const int width = 200, height = 100;
        var transforms = Enumerable.Range(1, 400).Select(k => ImageAugmenter.Draw(new AugmentationView(k % 17 == 0 ? 1 : k % 17, k / 17), width, height)).ToList();

        var flipped = transforms.Count(t => t.Flip) / (double)transforms.Count;
        Assert.InRange(flipped, 0.4, 0.6);
        Assert.All(transforms, t =>
        {
            Assert.InRange(t.RotationDegrees, -ImageAugmenter.MaxRotationDegrees, ImageAugmenter.MaxRotationDegrees);
            Assert.True(t.Crop.Left >= 0 && t.Crop.Top >= 0 && t.Crop.Right <= width + 1e-3 && t.Crop.Bottom <= height + 1e-3, $"crop {t.Crop} leaves the image");
            // Clamping to the image can only shrink a crop, so the area is at most the documented maximum.
            Assert.InRange(t.Crop.Width * t.Crop.Height / (width * height), 0.3, 1.0 + 1e-6);
        });
        Assert.Contains(transforms, t => t.RotationDegrees < -5);
        Assert.Contains(transforms, t => t.RotationDegrees > 5);
        // On a square image nothing clamps: every crop keeps 60-100 % of the area and an aspect within 3/4..4/3.
        Assert.All(Enumerable.Range(1, 16).Select(k => ImageAugmenter.Draw(new AugmentationView(k, 42), 300, 300)), t =>
        {
            var area = t.Crop.Width * t.Crop.Height / (300.0 * 300);
            var aspect = t.Crop.Width / t.Crop.Height;
            if (t.Crop.Width < 299.9 && t.Crop.Height < 299.9)
            {
                Assert.InRange(area, ImageAugmenter.MinAreaFraction - 1e-6, ImageAugmenter.MaxAreaFraction + 1e-6);
                Assert.InRange(aspect, ImageAugmenter.MinAspect - 1e-6, ImageAugmenter.MaxAspect + 1e-6);
            }
        });
        Assert.Equal(ImageAugmenter.Draw(new AugmentationView(3, 9), width, height), ImageAugmenter.Draw(new AugmentationView(3, 9), width, height));
    }

    [Fact]
    public void A_flip_only_view_mirrors_the_pixels()
    {
        // The left half red, the right half blue: any view keeps most of the picture, and a flipped view swaps the sides.
        using var source = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(64, 64, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Premul));
        for (var y = 0; y < 64; y++)
            for (var x = 0; x < 64; x++)
                source.SetPixel(x, y, x < 32 ? SkiaSharp.SKColors.Red : SkiaSharp.SKColors.Blue);
        var views = Enumerable.Range(1, 16).Select(k => new AugmentationView(k, 11)).ToList();

        foreach (var view in views)
        {
            using var result = ImageAugmenter.Apply(source, view);
            var flip = ImageAugmenter.Draw(view, 64, 64).Flip;
            var leftIsRed = result.GetPixel(4, 32).Red > 200;
            var rightIsBlue = result.GetPixel(59, 32).Blue > 200;
            Assert.Equal(!flip, leftIsRed);
            Assert.Equal(!flip, rightIsBlue);
        }
        Assert.Contains(views, v => ImageAugmenter.Draw(v, 64, 64).Flip);
        Assert.Contains(views, v => !ImageAugmenter.Draw(v, 64, 64).Flip);
        Assert.Same(source, ImageAugmenter.Apply(source, AugmentationView.None));
    }
}

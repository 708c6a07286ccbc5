using SkiaSharp;

namespace Graft.Backbone.Imaging;

/// <summary>One augmented view of an image: the view number (0 = the image itself) and the seed it is drawn from.</summary>
public readonly record struct AugmentationView(int View, long Seed)
{
    /// <summary>The largest view number accepted: views are extra backbone runs at training time, so a few suffice.</summary>
    public const int MaxView = 16;

    /// <summary>The image as sent, unchanged.</summary>
    public static AugmentationView None => default;

    public bool IsIdentity => View == 0;
}

/// <summary>
/// Training-time image augmentation before the usual preprocessing: a horizontal flip (p 0.5), a random resized crop
/// (area 60–100 % of the image, aspect 3/4–4/3, log-uniform as in torchvision's RandomResizedCrop) and a small rotation
/// (±10°), drawn from (seed, view) alone, so the same request always gives the same pixels and the cache can key by it.
/// The three are one affine map drawn with SkiaSharp; pixels the map pulls from outside the image repeat the nearest
/// edge (no white or black corners a real photo of the object would not have). The output has the input's size.
/// </summary>
public static class ImageAugmenter
{
    public const double FlipProbability = 0.5;
    public const double MinAreaFraction = 0.6;
    public const double MaxAreaFraction = 1.0;
    public const double MinAspect = 3.0 / 4.0;
    public const double MaxAspect = 4.0 / 3.0;
    public const double MaxRotationDegrees = 10;

    private static readonly SKSamplingOptions Sampling = new(SKFilterMode.Linear, SKMipmapMode.None);

    /// <summary>The transform of one view, for tests and logs.</summary>
    public readonly record struct Transform(bool Flip, SKRect Crop, float RotationDegrees);

    /// <summary>Draws the transform of <paramref name="view"/> for an image of the given size (deterministic).</summary>
    public static Transform Draw(AugmentationView view, int width, int height)
    {
        // splitmix64 over (seed, view): stable across runtimes and processes (System.Random and HashCode are not promised to be).
        var state = unchecked((ulong)view.Seed * 0x9E3779B97F4A7C15UL ^ (ulong)view.View * 0xBF58476D1CE4E5B9UL ^ 0x94D049BB133111EBUL);
        double Next()
        {
            state = unchecked(state + 0x9E3779B97F4A7C15UL);
            var z = state;
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            z ^= z >> 31;
            return (z >> 11) * (1.0 / (1UL << 53));
        }

        var flip = Next() < FlipProbability;
        var area = width * (double)height * (MinAreaFraction + (MaxAreaFraction - MinAreaFraction) * Next());
        var aspect = Math.Exp(Math.Log(MinAspect) + (Math.Log(MaxAspect) - Math.Log(MinAspect)) * Next());
        // A crop wider or taller than the image is clamped to it (the aspect then bends towards the image's own).
        var cropWidth = Math.Min(width, Math.Sqrt(area * aspect));
        var cropHeight = Math.Min(height, Math.Sqrt(area / aspect));
        var left = (width - cropWidth) * Next();
        var top = (height - cropHeight) * Next();
        var rotation = (float)((2 * Next() - 1) * MaxRotationDegrees);
        return new Transform(flip, new SKRect((float)left, (float)top, (float)(left + cropWidth), (float)(top + cropHeight)), rotation);
    }

    /// <summary>The view of <paramref name="source"/> (an upright RGBA bitmap); view 0 returns the source itself.
    /// The caller owns a returned bitmap that is not the source.</summary>
    public static SKBitmap Apply(SKBitmap source, AugmentationView view)
    {
        if (view.IsIdentity) return source;
        var (width, height) = (source.Width, source.Height);
        var t = Draw(view, width, height);
        var result = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var image = SKImage.FromBitmap(source);
        using var shader = image.ToShader(SKShaderTileMode.Clamp, SKShaderTileMode.Clamp, Sampling);
        using var paint = new SKPaint { Shader = shader, BlendMode = SKBlendMode.Src };
        using (var canvas = new SKCanvas(result))
        {
            // Output pixel → crop: scale the crop up to the whole output around its centre, rotate, mirror.
            canvas.Translate(width / 2f, height / 2f);
            canvas.Scale(width / t.Crop.Width, height / t.Crop.Height);
            canvas.RotateDegrees(t.RotationDegrees);
            if (t.Flip) canvas.Scale(-1, 1);
            canvas.Translate(-t.Crop.MidX, -t.Crop.MidY);
            canvas.DrawPaint(paint);
            canvas.Flush();
        }
        return result;
    }
}

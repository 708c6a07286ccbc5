using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Graft.Backbone.Model;
using SkiaSharp;

namespace Graft.Backbone.Imaging;

/// <summary>Turns encoded image bytes into the model's input tensor (channels × height × width, no batch dimension)
/// exactly as the profile says: decode, orient, composite alpha over white, resize/crop, reorder channels, scale,
/// subtract the mean image and/or mean, divide by std.</summary>
public sealed class Preprocessor
{
    // Mipmaps only pay when shrinking by more than 2x (photos to 224 px), where plain bilinear would alias; building
    // them for every image costs 3.5 ms of a 4.5 ms upscale from 28x28 (measured), so enlarging skips them.
    private static readonly SKSamplingOptions Shrinking = new(SKFilterMode.Linear, SKMipmapMode.Linear);
    private static readonly SKSamplingOptions Enlarging = new(SKFilterMode.Linear, SKMipmapMode.None);

    private readonly BackboneProfile _profile;
    private readonly float[]? _meanImage;
    // Its pixel limit applies before any pixel buffer exists.
    private readonly ImageDecoder _decoder;
    private readonly int[] _sourceChannel;
    // Per channel c: value = pixel * _gain[c] + _offset[c][i], the profile's scale, mean image, mean and std folded
    // into one multiply-add that TensorPrimitives vectorises.
    private readonly float[] _gain;
    private readonly float[][] _offset;

    /// <summary>Creates a preprocessor; <paramref name="meanImage"/> is [3, InputHeight, InputWidth] in model channel order.</summary>
    public Preprocessor(BackboneProfile profile, float[]? meanImage, long maxPixels)
    {
        _profile = profile;
        var planeSize = profile.InputWidth * profile.InputHeight;
        if (meanImage is not null && meanImage.Length != 3 * planeSize)
        {
            throw new InvalidOperationException($"The mean image has {meanImage.Length} values; profile '{profile.Name}' needs 3x{profile.InputHeight}x{profile.InputWidth} = {3 * planeSize}.");
        }
        _meanImage = meanImage;
        _decoder = new ImageDecoder(maxPixels);
        _sourceChannel = profile.ColorOrder == ColorOrder.Bgr ? [2, 1, 0] : [0, 1, 2];
        var mean = profile.Mean.Length == 3 ? profile.Mean : [0f, 0f, 0f];
        var invStd = profile.Std.Length == 3 ? profile.Std.Select(s => 1f / s).ToArray() : [1f, 1f, 1f];
        // ((pixel * scale) - meanImage[i] - mean) * invStd = pixel * (scale * invStd) - (meanImage[i] + mean) * invStd
        _gain = [.. invStd.Select(i => profile.Scale * i)];
        _offset = [.. Enumerable.Range(0, 3).Select(c => Enumerable.Range(0, planeSize)
            .Select(i => -((meanImage?[(c * planeSize) + i] ?? 0f) + mean[c]) * invStd[c]).ToArray())];
    }

    /// <summary>Builds the preprocessor a profile describes, reading its mean image file if it has one.</summary>
    public static Preprocessor Create(BackboneProfile profile, long maxPixels)
    {
        var meanImage = profile.MeanImagePath is { } path
            ? OnnxInitializers.ReadFloats(path, profile.MeanImageInitializer!, [1, 3, profile.InputHeight, profile.InputWidth])
            : null;
        return new Preprocessor(profile, meanImage, maxPixels);
    }

    /// <summary>The per-pixel mean image [3, H, W] in model channel order, or empty when the profile has none.</summary>
    public ReadOnlyMemory<float> MeanImage => _meanImage;

    /// <summary>Decodes and preprocesses encoded image bytes.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image.</exception>
    public float[] Preprocess(ReadOnlySpan<byte> encoded)
    {
        using var bitmap = _decoder.Decode(encoded);
        return Preprocess(bitmap);
    }

    /// <summary>Decodes, augments (<see cref="ImageAugmenter"/>; view 0 is the image itself) and preprocesses encoded image bytes.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image.</exception>
    public float[] Preprocess(ReadOnlySpan<byte> encoded, AugmentationView view)
    {
        using var bitmap = _decoder.Decode(encoded);
        var augmented = ImageAugmenter.Apply(bitmap, view);
        try
        {
            return Preprocess(augmented);
        }
        finally
        {
            if (!ReferenceEquals(augmented, bitmap)) augmented.Dispose();
        }
    }

    /// <summary>Preprocesses an already decoded, upright bitmap.</summary>
    public float[] Preprocess(SKBitmap bitmap)
    {
        var (width, height) = (_profile.InputWidth, _profile.InputHeight);
        using var target = Resample(bitmap);
        var pixels = MemoryMarshal.AsBytes(target.GetPixelSpan());
        var plane = width * height;
        var tensor = GC.AllocateUninitializedArray<float>(3 * plane);
        // One pass over the RGBA pixels splits them into the three planes (in model channel order), then one
        // vectorised multiply-add per plane: 0.31-0.52 ms of CPU per 224x224 image against 0.66-1.10 for the scalar
        // loop per channel it replaced, same results (interleaved A/B, 2 cores at load 45).
        var first = tensor.AsSpan(0, plane);
        var second = tensor.AsSpan(plane, plane);
        var third = tensor.AsSpan(2 * plane, plane);
        var (s0, s1, s2) = (_sourceChannel[0], _sourceChannel[1], _sourceChannel[2]);
        pixels = pixels[..(plane * 4)];
        for (int i = 0, p = 0; i < plane; i++, p += 4)
        {
            first[i] = pixels[p + s0];
            second[i] = pixels[p + s1];
            third[i] = pixels[p + s2];
        }
        for (var c = 0; c < 3; c++)
        {
            var output = tensor.AsSpan(c * plane, plane);
            TensorPrimitives.MultiplyAdd(output, _gain[c], _offset[c], output);
        }
        return tensor;
    }

    /// <summary>The image resized and cropped to the input size as RGB 0-255 bytes, [height, width, 3] row-major: the
    /// "pixels" input of an exported model, which applies the rest of the preprocessing itself.</summary>
    /// <exception cref="InputRejectedException">The bytes are not an acceptable image.</exception>
    public byte[] Pixels(ReadOnlySpan<byte> encoded)
    {
        using var bitmap = _decoder.Decode(encoded);
        using var target = Resample(bitmap);
        var rgba = MemoryMarshal.AsBytes(target.GetPixelSpan());
        var rgb = new byte[rgba.Length / 4 * 3];
        for (int i = 0, j = 0; i < rgba.Length; i += 4, j += 3)
        {
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }
        return rgb;
    }

    /// <summary>Draws the bitmap over white onto an RGBA bitmap of the input size, realising the resize policy.</summary>
    private SKBitmap Resample(SKBitmap bitmap)
    {
        var (width, height) = (_profile.InputWidth, _profile.InputHeight);
        using var image = SKImage.FromBitmap(bitmap);
        var target = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(target))
        {
            // Transparent pixels show what a viewer shows: the image over a white page.
            canvas.Clear(SKColors.White);
            var source = SourceRect(bitmap.Width, bitmap.Height);
            var sampling = source.Width > 2 * width || source.Height > 2 * height ? Shrinking : Enlarging;
            canvas.DrawImage(image, source, new SKRect(0, 0, width, height), sampling, null);
            canvas.Flush();
        }
        return target;
    }

    /// <summary>The source rectangle that, drawn onto the input size, realises the profile's resize policy.</summary>
    private SKRect SourceRect(int sourceWidth, int sourceHeight)
    {
        if (_profile.Resize == ResizeMode.Stretch) return new SKRect(0, 0, sourceWidth, sourceHeight);
        var scale = (float)_profile.EffectiveShorterSide / Math.Min(sourceWidth, sourceHeight);
        var (cropWidth, cropHeight) = (_profile.InputWidth / scale, _profile.InputHeight / scale);
        var (left, top) = ((sourceWidth - cropWidth) / 2f, (sourceHeight - cropHeight) / 2f);
        return new SKRect(left, top, left + cropWidth, top + cropHeight);
    }
}

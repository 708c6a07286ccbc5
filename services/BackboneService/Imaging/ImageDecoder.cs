using SkiaSharp;

namespace Graft.Backbone.Imaging;

/// <summary>Decodes encoded image bytes (JPEG, PNG, WebP, GIF first frame, BMP) with SkiaSharp into an upright
/// RGBA bitmap. The pixel count is checked from the codec header before any pixel buffer is allocated.</summary>
public sealed class ImageDecoder(long maxPixels)
{
    private static readonly HashSet<SKEncodedImageFormat> Accepted =
        [SKEncodedImageFormat.Jpeg, SKEncodedImageFormat.Png, SKEncodedImageFormat.Webp, SKEncodedImageFormat.Gif, SKEncodedImageFormat.Bmp];

    /// <summary>What the service accepts, for refusal messages.</summary>
    public const string AcceptedFormats = "JPEG, PNG, WebP, GIF (first frame) or BMP";

    /// <summary>Largest decoded image accepted, in pixels.</summary>
    public long MaxPixels { get; } = maxPixels;

    /// <summary>Decodes <paramref name="encoded"/> into an upright (EXIF orientation applied), premultiplied RGBA bitmap.
    /// The caller owns the result.</summary>
    /// <exception cref="InputRejectedException">Empty, unrecognised, truncated or too large input.</exception>
    public SKBitmap Decode(ReadOnlySpan<byte> encoded)
    {
        if (encoded.IsEmpty)
        {
            throw new InputRejectedException($"The image is empty; send the encoded bytes of a {AcceptedFormats} file.");
        }
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data);
        if (codec is null)
        {
            // Skia gives no codec both for unknown bytes and for a known format whose header is cut short or broken;
            // the signature tells the two apart, so the user learns whether to fix the file or the format.
            throw new InputRejectedException(Signature(encoded) is { } format
                ? $"The {format} is truncated or corrupt (its header cannot be read); send the complete file."
                : $"The {encoded.Length} bytes are not a recognised image (no known signature); send a {AcceptedFormats} file.");
        }
        if (!Accepted.Contains(codec.EncodedFormat))
        {
            throw new InputRejectedException($"Image format {codec.EncodedFormat} is not accepted; send a {AcceptedFormats} file.");
        }
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if (width <= 0 || height <= 0)
        {
            throw new InputRejectedException($"The image header gives an empty size {width}x{height}; send an image with pixels.");
        }
        if ((long)width * height > MaxPixels)
        {
            throw new InputRejectedException(
                $"The image is {width}x{height} = {(long)width * height} pixels, over the limit of {MaxPixels}; scale it down before sending.",
                isSizeLimit: true);
        }

        // Decoding into RGBA converts grayscale, palette and CMYK sources; for GIF this is frame 0.
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        var bitmap = new SKBitmap(info);
        try
        {
            var decoded = codec.GetPixels(info, bitmap.GetPixels());
            if (decoded is not (SKCodecResult.Success))
            {
                throw new InputRejectedException(decoded == SKCodecResult.IncompleteInput
                    ? $"The {Name(codec.EncodedFormat)} is truncated or corrupt (its data ends early); send the complete file."
                    : $"The {Name(codec.EncodedFormat)} is truncated or corrupt ({Describe(decoded)}); send a valid {AcceptedFormats} file.");
            }
            var upright = Orient(bitmap, codec.EncodedOrigin);
            if (!ReferenceEquals(upright, bitmap)) bitmap.Dispose();
            return upright;
        }
        catch
        {
            bitmap.Dispose();
            throw;
        }
    }

    /// <summary>The format a file's first bytes announce (whatever follows them), or null when they announce none we accept.</summary>
    public static string? Signature(ReadOnlySpan<byte> bytes) => bytes switch
    {
        [0xFF, 0xD8, 0xFF, ..] => "JPEG",
        [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => "PNG",
        [(byte)'G', (byte)'I', (byte)'F', (byte)'8', (byte)'7' or (byte)'9', (byte)'a', ..] => "GIF",
        [(byte)'R', (byte)'I', (byte)'F', (byte)'F', _, _, _, _, (byte)'W', (byte)'E', (byte)'B', (byte)'P', ..] => "WebP",
        [(byte)'B', (byte)'M', _, _, _, _, _, _, _, _, _, _, _, _, ..] => "BMP",
        _ => null,
    };

    private static string Name(SKEncodedImageFormat format) => format switch
    {
        SKEncodedImageFormat.Jpeg => "JPEG",
        SKEncodedImageFormat.Png => "PNG",
        SKEncodedImageFormat.Gif => "GIF",
        SKEncodedImageFormat.Webp => "WebP",
        SKEncodedImageFormat.Bmp => "BMP",
        _ => format.ToString(),
    };

    private static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.Unimplemented => "unsupported encoding",
        SKCodecResult.InvalidInput => "invalid data",
        SKCodecResult.IncompleteInput => "truncated data",
        SKCodecResult.ErrorInInput => "corrupt data",
        _ => result.ToString(),
    };

    /// <summary>Applies the EXIF orientation so the bitmap is as a viewer would display it.</summary>
    private static SKBitmap Orient(SKBitmap source, SKEncodedOrigin origin)
    {
        if (origin == SKEncodedOrigin.TopLeft) return source;
        var (w, h) = (source.Width, source.Height);
        var swaps = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        var result = new SKBitmap(new SKImageInfo(swaps ? h : w, swaps ? w : h, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(result);
        // Each case maps a source point (x, y) to where a viewer shows it.
        switch (origin)
        {
            case SKEncodedOrigin.TopRight: canvas.Translate(w, 0); canvas.Scale(-1, 1); break;      // (w-x, y)
            case SKEncodedOrigin.BottomRight: canvas.Translate(w, h); canvas.Scale(-1, -1); break;  // (w-x, h-y)
            case SKEncodedOrigin.BottomLeft: canvas.Translate(0, h); canvas.Scale(1, -1); break;    // (x, h-y)
            case SKEncodedOrigin.LeftTop: canvas.Scale(-1, 1); canvas.RotateDegrees(90); break;     // (y, x)
            case SKEncodedOrigin.RightTop: canvas.Translate(h, 0); canvas.RotateDegrees(90); break; // (h-y, x)
            case SKEncodedOrigin.RightBottom: canvas.Translate(h, w); canvas.Scale(1, -1); canvas.RotateDegrees(90); break; // (h-y, w-x)
            case SKEncodedOrigin.LeftBottom: canvas.Translate(0, w); canvas.RotateDegrees(-90); break; // (y, w-x)
        }
        using var paint = new SKPaint { BlendMode = SKBlendMode.Src };
        canvas.DrawBitmap(source, 0, 0, SKSamplingOptions.Default, paint);
        canvas.Flush();
        return result;
    }
}

using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using SkiaSharp;

namespace Graft.Backbone.Tests;

/// <summary>Decoding and preprocessing, called directly (the same public entry points a fuzz suite would use).</summary>
public sealed class ImagingTests
{
    private static readonly BackboneProfile ResNet18 = BackboneProfiles.Resolve(new BackboneOptions(), AppContext.BaseDirectory);
    private static readonly Preprocessor Preprocessor = Preprocessor.Create(ResNet18, 40_000_000);
    private static readonly float[] MeanImage = OnnxInitializers.ReadFloats(ResNet18.MeanImagePath!, "MeanImage", [1, 3, 224, 224]);
    private const int Plane = 224 * 224;

    [Fact]
    public void Resnet18_input_is_bgr_0_to_255_minus_the_mean_image_of_ResNetPreprocess()
    {
        using var bitmap = Images.Solid(50, 50, new SKColor(10, 120, 230));

        var tensor = Preprocessor.Preprocess(Images.Encode(bitmap));

        // Channel 0 is blue, 1 green, 2 red; each pixel minus the mean image at the same place.
        float[] expected = [230, 120, 10];
        for (var c = 0; c < 3; c++)
        {
            foreach (var i in new[] { 0, 113, Plane / 2, Plane - 1 })
            {
                Assert.Equal(expected[c] - MeanImage[(c * Plane) + i], tensor[(c * Plane) + i], 3);
            }
        }
    }

    [Fact]
    public void The_mean_image_is_an_imagenet_bgr_mean()
    {
        // Sanity of what we subtract: ImageNet channel means are about B 104, G 117, R 124.
        var means = Enumerable.Range(0, 3).Select(c => MeanImage.AsSpan(c * Plane, Plane).ToArray().Average()).ToArray();

        Assert.InRange(means[0], 95, 112);
        Assert.InRange(means[1], 108, 125);
        Assert.InRange(means[2], 115, 132);
    }

    [Fact]
    public void A_grayscale_png_gives_equal_channels_before_the_mean_is_subtracted()
    {
        using var gray = new SKBitmap(new SKImageInfo(28, 28, SKColorType.Gray8, SKAlphaType.Opaque));
        gray.Erase(new SKColor(77, 77, 77));

        var tensor = Preprocessor.Preprocess(Images.Encode(gray));

        for (var c = 0; c < 3; c++) Assert.Equal(77f, tensor[(c * Plane) + 500] + MeanImage[(c * Plane) + 500], 3);
    }

    [Fact]
    public void Transparent_pixels_are_composited_over_white()
    {
        using var clear = Images.Solid(32, 32, SKColors.Transparent);

        var tensor = Preprocessor.Preprocess(Images.Encode(clear));

        for (var c = 0; c < 3; c++) Assert.Equal(255f, tensor[(c * Plane) + 1000] + MeanImage[(c * Plane) + 1000], 3);
    }

    [Fact]
    public void A_gif_is_decoded_from_its_first_frame()
    {
        using var bitmap = new ImageDecoder(1000).Decode(Images.TwoFrameGif());

        Assert.Equal(new SKColor(255, 0, 0), bitmap.GetPixel(0, 0));
    }

    [Fact]
    public void Exif_orientation_6_rotates_the_image_upright()
    {
        // A 40×20 landscape image whose left half is red and right half blue; orientation 6 means "rotate 90° clockwise to view".
        using var source = Images.Solid(40, 20, SKColors.Blue);
        using (var canvas = new SKCanvas(source)) canvas.DrawRect(0, 0, 20, 20, new SKPaint { Color = SKColors.Red });
        var jpeg = Images.WithExifOrientation(Images.Encode(source, SKEncodedImageFormat.Jpeg, 100), 6);

        using var upright = new ImageDecoder(1000).Decode(jpeg);

        // Rotated clockwise: portrait 20×40, the former left (red) half now on top.
        Assert.Equal((20, 40), (upright.Width, upright.Height));
        Assert.True(upright.GetPixel(10, 5).Red > 200 && upright.GetPixel(10, 5).Blue < 60, $"top is {upright.GetPixel(10, 5)}");
        Assert.True(upright.GetPixel(10, 35).Blue > 200 && upright.GetPixel(10, 35).Red < 60, $"bottom is {upright.GetPixel(10, 35)}");
    }

    [Fact]
    public void A_wide_photo_is_resized_by_its_shorter_side_and_centre_cropped()
    {
        // 600×200: left and right 200 px green, centre 200 px red. Shorter side → 224 gives 672×224; the centre crop is all red.
        using var wide = Images.Solid(600, 200, SKColors.Lime);
        using (var canvas = new SKCanvas(wide)) canvas.DrawRect(200, 0, 200, 200, new SKPaint { Color = SKColors.Red });

        var tensor = Preprocessor.Preprocess(Images.Encode(wide));

        foreach (var x in new[] { 2, 112, 221 })
        {
            var i = (112 * 224) + x;
            Assert.Equal(255f, tensor[(2 * Plane) + i] + MeanImage[(2 * Plane) + i], 0); // red
            Assert.Equal(0f, tensor[(1 * Plane) + i] + MeanImage[(1 * Plane) + i], 0);   // green
        }
    }

    [Fact]
    public void An_image_whose_header_exceeds_the_pixel_limit_is_refused_as_a_size_limit()
    {
        var bomb = Images.PngHeaderOnly(20_000, 20_000);

        var e = Assert.Throws<InputRejectedException>(() => new ImageDecoder(40_000_000).Decode(bomb));

        Assert.True(e.IsSizeLimit);
        Assert.Contains("20000x20000", e.Message);
        Assert.Contains("40000000", e.Message);
    }

    [Theory]
    [InlineData(new byte[0], "empty")]
    [InlineData(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "not a recognised image")]
    public void Bytes_that_are_not_an_image_are_refused_with_the_accepted_formats(byte[] bytes, string reason)
    {
        var e = Assert.Throws<InputRejectedException>(() => new ImageDecoder(1000).Decode(bytes));

        Assert.False(e.IsSizeLimit);
        Assert.Contains(reason, e.Message);
        Assert.Contains(ImageDecoder.AcceptedFormats, e.Message);
    }

    [Fact]
    public void A_truncated_image_is_refused()
    {
        using var bitmap = Images.Solid(64, 64, SKColors.Coral);
        using (var canvas = new SKCanvas(bitmap)) canvas.DrawCircle(32, 32, 20, new SKPaint { Color = SKColors.Navy });
        var png = Images.Encode(bitmap);

        var e = Assert.Throws<InputRejectedException>(() => new ImageDecoder(1_000_000).Decode(png.AsSpan(0, png.Length / 2)));

        Assert.Contains("truncated", e.Message);
    }

    public static TheoryData<string> Formats => ["JPEG", "PNG", "WebP", "GIF", "BMP"];

    [Theory]
    [MemberData(nameof(Formats))]
    public void A_file_of_a_known_format_cut_short_is_called_truncated_or_corrupt_not_unknown(string format)
    {
        var file = Encoded(format);
        Assert.Equal(format, ImageDecoder.Signature(file)); // the fixture really is that format

        foreach (var length in new[] { 14, file.Length / 2 })
        {
            var e = Assert.Throws<InputRejectedException>(() => new ImageDecoder(1_000_000).Decode(file.AsSpan(0, length)));

            Assert.Contains($"The {format} is truncated or corrupt", e.Message);
            Assert.DoesNotContain("no known signature", e.Message);
        }
    }

    [Fact]
    public void A_jpeg_cut_short_says_the_jpeg_is_truncated_or_corrupt()
    {
        var jpeg = Encoded("JPEG");

        var e = Assert.Throws<InputRejectedException>(() => new ImageDecoder(1_000_000).Decode(jpeg.AsSpan(0, jpeg.Length / 2)));

        Assert.Contains("the JPEG is truncated or corrupt", e.Message, StringComparison.OrdinalIgnoreCase);
    }

    private static byte[] Encoded(string format)
    {
        using var bitmap = Images.Solid(64, 64, SKColors.Coral);
        using (var canvas = new SKCanvas(bitmap)) canvas.DrawCircle(32, 32, 20, new SKPaint { Color = SKColors.Navy });
        return format switch
        {
            "JPEG" => Images.Encode(bitmap, SKEncodedImageFormat.Jpeg),
            "PNG" => Images.Encode(bitmap),
            "WebP" => Images.Encode(bitmap, SKEncodedImageFormat.Webp),
            "GIF" => Images.TwoFrameGif(),
            _ => Bmp(bitmap),
        };
    }

    /// <summary>A 24-bit BMP (Skia decodes BMP but does not encode it).</summary>
    private static byte[] Bmp(SKBitmap bitmap)
    {
        var (w, h) = (bitmap.Width, bitmap.Height);
        var stride = (w * 3 + 3) & ~3;
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write((byte)'B'); writer.Write((byte)'M');
        writer.Write(54 + stride * h); writer.Write(0); writer.Write(54);
        writer.Write(40); writer.Write(w); writer.Write(h); writer.Write((short)1); writer.Write((short)24);
        writer.Write(0); writer.Write(stride * h); writer.Write(2835); writer.Write(2835); writer.Write(0); writer.Write(0);
        for (var y = h - 1; y >= 0; y--)
        {
            for (var x = 0; x < w; x++)
            {
                var c = bitmap.GetPixel(x, y);
                writer.Write(c.Blue); writer.Write(c.Green); writer.Write(c.Red);
            }
            for (var p = w * 3; p < stride; p++) writer.Write((byte)0);
        }
        return stream.ToArray();
    }
}

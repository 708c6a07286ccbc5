using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using Graft.Testing;
using SkiaSharp;

namespace Graft.Reliability.Tests.Support;

/// <summary>Hostile and unusual images, made in code (SkiaSharp, or raw PNG chunks where SkiaSharp cannot write the
/// variant), plus the two committed fixtures SkiaSharp cannot encode (see <c>Fixtures/make-fixtures.sh</c>).</summary>
public static class HostileImages
{
    /// <summary>A real garment photo from the committed samples, as PNG bytes.</summary>
    public static byte[] SamplePng(string label = "sneaker") =>
        SampleImages.Load("test", label)[0].ReadBytes();

    /// <summary>A sample re-encoded as a <paramref name="size"/>-pixel colour JPEG.</summary>
    public static byte[] SampleJpeg(int size = 64, string label = "sneaker", int quality = 90)
    {
        using var source = SKBitmap.Decode(SamplePng(label));
        using var scaled = source.Resize(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Premul), new SKSamplingOptions(SKFilterMode.Linear));
        using var image = SKImage.FromBitmap(scaled);
        using var data = image.Encode(SKEncodedImageFormat.Jpeg, quality);
        return data.ToArray();
    }

    /// <summary>The first half of a valid JPEG.</summary>
    public static byte[] TruncatedJpeg()
    {
        var jpeg = SampleJpeg(128);
        return jpeg[..(jpeg.Length / 2)];
    }

    public static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        bytes[0] = 0x00; // never a real signature by accident
        return bytes;
    }

    /// <summary>A small PNG whose header claims <paramref name="width"/> x <paramref name="height"/> RGB pixels
    /// (a decompression bomb: a few KB that would decode to tens of GB).</summary>
    public static byte[] PngBomb(int width = 100_000, int height = 100_000)
    {
        // 1 MiB of zero rows compresses to about 1 KB; a decoder that trusted the header would allocate 30 GB first.
        return Png(width, height, bitDepth: 8, colourType: 2, Compress(new byte[1 << 20]));
    }

    /// <summary>A 32x32 RGB PNG with 16 bits per sample (a gradient), which SkiaSharp cannot encode.</summary>
    public static byte[] Png16Bit(int size = 32)
    {
        var raw = new byte[size * (1 + size * 6)];
        var at = 0;
        for (var y = 0; y < size; y++)
        {
            raw[at++] = 0; // filter: none
            for (var x = 0; x < size; x++)
            {
                foreach (var sample in new[] { x * 65535 / size, y * 65535 / size, 40000 })
                {
                    BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(at), (ushort)sample);
                    at += 2;
                }
            }
        }
        return Png(size, size, bitDepth: 16, colourType: 2, Compress(raw));
    }

    public static byte[] OnePixel() => Encode(new SKImageInfo(1, 1, SKColorType.Rgba8888, SKAlphaType.Premul), c => c.Clear(SKColors.OrangeRed));

    /// <summary>An 8-bit single-channel (grey) PNG.</summary>
    public static byte[] Grayscale(int size = 48) => Encode(new SKImageInfo(size, size, SKColorType.Gray8, SKAlphaType.Opaque), c =>
    {
        c.Clear(SKColors.Black);
        using var paint = new SKPaint { Color = SKColors.White };
        c.DrawCircle(size / 2f, size / 2f, size / 3f, paint);
    });

    /// <summary>An RGBA PNG, transparent except for a half-transparent square.</summary>
    public static byte[] WithAlpha(int size = 48) => Encode(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul), c =>
    {
        c.Clear(SKColors.Transparent);
        using var paint = new SKPaint { Color = new SKColor(20, 90, 200, 128) };
        c.DrawRect(size / 4f, size / 4f, size / 2f, size / 2f, paint);
    });

    /// <summary>A four-component (CMYK, Adobe) JPEG made by ImageMagick.</summary>
    public static byte[] CmykJpeg() => Fixture("cmyk.jpg");

    /// <summary>A two-frame looping GIF made by ImageMagick.</summary>
    public static byte[] AnimatedGif() => Fixture("animated.gif");

    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", name));

    private static byte[] Encode(SKImageInfo info, Action<SKCanvas> draw)
    {
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            draw(canvas);
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static byte[] Compress(byte[] raw)
    {
        using var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.SmallestSize))
        {
            z.Write(raw);
        }
        return output.ToArray();
    }

    /// <summary>Writes a PNG from its parts: signature, IHDR, one IDAT, IEND, each chunk with its CRC-32.</summary>
    public static byte[] Png(int width, int height, byte bitDepth, byte colourType, byte[] idat)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = bitDepth;
        ihdr[9] = colourType;
        Chunk(png, "IHDR", ihdr);
        Chunk(png, "IDAT", idat);
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream png, string type, byte[] body)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, body.Length);
        png.Write(length);
        var typeAndBody = new byte[4 + body.Length];
        System.Text.Encoding.ASCII.GetBytes(type, typeAndBody);
        body.CopyTo(typeAndBody, 4);
        png.Write(typeAndBody);
        Span<byte> crc = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32.HashToUInt32(typeAndBody));
        png.Write(crc);
    }
}

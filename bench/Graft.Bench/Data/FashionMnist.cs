using System.IO.Compression;
using SkiaSharp;

namespace Graft.Bench.Data;

/// <summary>One Fashion-MNIST image: its index in its split, its class, its 28×28 grey pixels.</summary>
public sealed record FashionImage(int Index, int Label, byte[] Pixels)
{
    private byte[]? _png;

    /// <summary>The image as PNG bytes, as a client would send it (encoded once, then reused).</summary>
    public byte[] Png => _png ??= FashionMnist.EncodePng(Pixels);

    public string ClassName => FashionMnist.Classes[Label].Name;
}

/// <summary>Reads Debian's <c>dataset-fashion-mnist</c> (IDX files, gzip) and picks the splits the benchmark uses.</summary>
public static class FashionMnist
{
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";
    public const int Side = 28;

    /// <summary>
    /// Class names (as in samples/fashion) and a plausible length distribution in cm, the same as
    /// samples/make-samples.cs: the tutorial's faked body lengths. The spread is the regressor's noise floor.
    /// </summary>
    public static readonly (string Name, double Mean, double Sd)[] Classes =
    [
        ("tshirt-top", 70, 4), ("trouser", 104, 5), ("pullover", 68, 4), ("dress", 95, 7), ("coat", 100, 6),
        ("sandal", 25, 2), ("shirt", 76, 4), ("sneaker", 28, 2), ("bag", 35, 5), ("ankle-boot", 27, 2),
    ];

    /// <summary>Loads a split ("train" or "t10k"); fails with the install command when the dataset is missing.</summary>
    public static IReadOnlyList<FashionImage> Load(string split, string directory = DefaultDirectory)
    {
        var imagesPath = Path.Combine(directory, $"{split}-images-idx3-ubyte.gz");
        var labelsPath = Path.Combine(directory, $"{split}-labels-idx1-ubyte.gz");
        if (!File.Exists(imagesPath) || !File.Exists(labelsPath))
        {
            throw new FileNotFoundException(
                $"Fashion-MNIST not found in {directory}. Install it with: sudo apt-get install dataset-fashion-mnist",
                imagesPath);
        }
        var images = ReadIdx(imagesPath, expectedRank: 3);
        var labels = ReadIdx(labelsPath, expectedRank: 1);
        var count = labels.Length;
        if (images.Length != count * Side * Side)
        {
            throw new InvalidDataException($"{imagesPath} holds {images.Length} bytes, expected {count}×{Side}×{Side}.");
        }
        var result = new FashionImage[count];
        for (var i = 0; i < count; i++)
        {
            result[i] = new FashionImage(i, labels[i], images.AsSpan(i * Side * Side, Side * Side).ToArray());
        }
        return result;
    }

    /// <summary>The first <paramref name="perClass"/> images of each class, in dataset order.</summary>
    public static IReadOnlyList<FashionImage> FirstPerClass(IEnumerable<FashionImage> images, int perClass)
    {
        var counts = new int[Classes.Length];
        var picked = new List<FashionImage>(perClass * Classes.Length);
        foreach (var image in images)
        {
            if (counts[image.Label] >= perClass) continue;
            counts[image.Label]++;
            picked.Add(image);
            if (picked.Count == perClass * Classes.Length) break;
        }
        return picked;
    }

    /// <summary>One length draw per image from its class distribution; deterministic for a seed.</summary>
    public static double[] DrawLengths(IReadOnlyList<FashionImage> images, int seed)
    {
        var random = new Random(seed);
        return images.Select(i => Classes[i.Label].Mean + Classes[i.Label].Sd * Gaussian(random)).ToArray();
    }

    /// <summary>E|noise| of a Gaussian with the class spread (σ·√(2/π)), averaged over the images' classes:
    /// the MAE of a regressor that knows each image's class mean exactly.</summary>
    public static double ExpectedNoiseFloorMae(IEnumerable<FashionImage> images) =>
        images.Average(i => Classes[i.Label].Sd * Math.Sqrt(2 / Math.PI));

    internal static byte[] EncodePng(byte[] pixels)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(Side, Side, SKColorType.Gray8, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    // IDX: big-endian magic (0, 0, type, rank), rank big-endian sizes, then the values.
    private static byte[] ReadIdx(string path, int expectedRank)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var buffer = new MemoryStream();
        gz.CopyTo(buffer);
        var bytes = buffer.ToArray();
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != expectedRank)
        {
            throw new InvalidDataException($"{path} is not an IDX file of unsigned bytes with rank {expectedRank}.");
        }
        return bytes[(4 + 4 * expectedRank)..];
    }

    private static double Gaussian(Random r) =>
        Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
}

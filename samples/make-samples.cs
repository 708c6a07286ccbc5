#!/usr/bin/env -S dotnet run
// Remakes samples/fashion from Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist).
// Run from the repository root:  dotnet run samples/make-samples.cs
// Deterministic: the same dataset files always give the same images and lengths.
#:property ManagePackageVersionsCentrally=false
#:package SkiaSharp@4.155.0
#:package SkiaSharp.NativeAssets.Linux.NoDependencies@4.155.0
#:property TreatWarningsAsErrors=false
#:property RuntimeIdentifier=linux-x64

using System.Globalization;
using System.IO.Compression;
using SkiaSharp;

const string source = "/usr/share/datasets/fashion-mnist";
const int trainPerClass = 30, testPerClass = 10;

// Folder name, and a plausible length distribution in cm (mean, standard deviation), as the tutorial
// faked cat and tiger lengths: the regressor can learn the class mean; the spread is the noise floor.
(string Name, double Mean, double Sd)[] classes =
[
    ("tshirt-top", 70, 4), ("trouser", 104, 5), ("pullover", 68, 4), ("dress", 95, 7), ("coat", 100, 6),
    ("sandal", 25, 2), ("shirt", 76, 4), ("sneaker", 28, 2), ("bag", 35, 5), ("ankle-boot", 27, 2),
];

var root = Path.Combine("samples", "fashion");
if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
var random = new Random(20261128);
Write("train", "train", trainPerClass);
Write("test", "t10k", testPerClass);
Console.WriteLine($"wrote {root}");

void Write(string split, string prefix, int perClass)
{
    var images = ReadIdx(Path.Combine(source, $"{prefix}-images-idx3-ubyte.gz"));
    var labels = ReadIdx(Path.Combine(source, $"{prefix}-labels-idx1-ubyte.gz"));
    var counts = new int[classes.Length];
    var csv = new List<string> { "path,target" };
    for (var i = 0; i < labels.Length && counts.Any(c => c < perClass); i++)
    {
        int label = labels[i];
        if (counts[label] >= perClass) continue;
        counts[label]++;
        var (name, mean, sd) = classes[label];
        var relative = $"{name}/{split}-{i:D5}.png";
        var path = Path.Combine(root, split, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var bitmap = new SKBitmap(new SKImageInfo(28, 28, SKColorType.Gray8, SKAlphaType.Opaque)))
        {
            var pixels = images.AsSpan(i * 784, 784);
            System.Runtime.InteropServices.Marshal.Copy(pixels.ToArray(), 0, bitmap.GetPixels(), 784);
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(path, data.ToArray());
        }
        var length = Math.Round(mean + sd * Gaussian(random), 1);
        csv.Add(string.Create(CultureInfo.InvariantCulture, $"{relative},{length}"));
    }
    File.WriteAllLines(Path.Combine(root, split, "lengths.csv"), csv);
}

// IDX: big-endian magic (type, rank), rank big-endian sizes, then the bytes.
static byte[] ReadIdx(string path)
{
    using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
    using var buffer = new MemoryStream();
    gz.CopyTo(buffer);
    var bytes = buffer.ToArray();
    int rank = bytes[3];
    return bytes[(4 + 4 * rank)..];
}

static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

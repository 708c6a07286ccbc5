using System.Globalization;

namespace Graft.Testing;

/// <summary>The committed fashion samples: <c>samples/fashion/{train,test}/&lt;class&gt;/*.png</c>, with a length target
/// for every image in <c>lengths.csv</c> (path relative to the CSV's folder, target).</summary>
public static class SampleImages
{
    /// <summary>One sample image with its class label and length target.</summary>
    public sealed record Sample(string Path, string Label, double Length)
    {
        public byte[] ReadBytes() => File.ReadAllBytes(Path);
    }

    /// <summary>The images of <paramref name="split"/> ("train" or "test"), optionally only some classes, in a stable order.</summary>
    public static IReadOnlyList<Sample> Load(string split, params string[] classes)
    {
        var folder = System.IO.Path.Combine(RepositoryLayout.FashionSamples, split);
        var csv = System.IO.Path.Combine(folder, "lengths.csv");
        var samples = new List<Sample>();
        foreach (var line in File.ReadLines(csv).Skip(1))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            var comma = line.LastIndexOf(',');
            var relative = line[..comma].Trim();
            var label = relative.Split('/')[0];
            if (classes.Length > 0 && !classes.Contains(label))
            {
                continue;
            }
            samples.Add(new Sample(System.IO.Path.Combine(folder, relative), label,
                double.Parse(line[(comma + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture)));
        }
        return samples.OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
    }
}

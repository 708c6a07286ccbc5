using Graft.V1;

namespace Graft.Heads.Tests.Support;

/// <summary>Seeded synthetic feature rows for tests about mechanics (registry, scheduling, validation) rather than
/// learning quality; the learning tests use real ResNet18 features (<see cref="FashionFeatures"/>).</summary>
public static class Synthetic
{
    /// <summary>Rows in <paramref name="classes"/> Gaussian clusters, labelled "c0", "c1", ...</summary>
    public static List<FeatureRow> Classified(int rows, int dimension, int classes, int seed = 1)
    {
        var random = new Random(seed);
        var centres = Enumerable.Range(0, classes).Select(_ => Enumerable.Range(0, dimension).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray()).ToArray();
        var result = new List<FeatureRow>();
        for (var i = 0; i < rows; i++)
        {
            var c = i % classes;
            var row = new FeatureRow { Label = "c" + c };
            row.Features.AddRange(centres[c].Select(v => v + (float)Gaussian(random) * 0.5f));
            result.Add(row);
        }
        return result;
    }

    /// <summary>Rows whose target is a fixed linear function of the features plus a little noise.</summary>
    public static List<FeatureRow> Regressed(int rows, int dimension, int seed = 1)
    {
        var random = new Random(seed);
        var weights = Enumerable.Range(0, dimension).Select(_ => random.NextDouble() * 2 - 1).ToArray();
        var result = new List<FeatureRow>();
        for (var i = 0; i < rows; i++)
        {
            var features = Enumerable.Range(0, dimension).Select(_ => (float)Gaussian(random)).ToArray();
            var row = new FeatureRow { Value = 50 + 10 * features.Select((f, j) => f * weights[j]).Sum() + Gaussian(random) * 0.1 };
            row.Features.AddRange(features);
            result.Add(row);
        }
        return result;
    }

    public static float[] Vector(int dimension, int seed = 7)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, dimension).Select(_ => (float)Gaussian(random)).ToArray();
    }

    private static double Gaussian(Random random)
        => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}

namespace Graft.Bench.Shared;

/// <summary>One labelled feature row: class index, synthetic length, features.</summary>
public sealed record FeatureRow(int Label, float Length, float[] Features);

/// <summary>
/// The hand-over between the harness and the ML.NET baseline process (which needs another SkiaSharp, so it runs
/// apart): little-endian int32 rows, int32 dimension, then per row int32 label, float32 length, float32 features.
/// </summary>
public static class FeatureFile
{
    public static void Write(string path, IReadOnlyList<FeatureRow> rows)
    {
        var dimension = rows.Count == 0 ? 0 : rows[0].Features.Length;
        using var writer = new BinaryWriter(File.Create(path));
        writer.Write(rows.Count);
        writer.Write(dimension);
        foreach (var row in rows)
        {
            if (row.Features.Length != dimension) throw new ArgumentException("All rows must have the same dimension.", nameof(rows));
            writer.Write(row.Label);
            writer.Write(row.Length);
            foreach (var value in row.Features) writer.Write(value);
        }
    }

    public static IReadOnlyList<FeatureRow> Read(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        var count = reader.ReadInt32();
        var dimension = reader.ReadInt32();
        var rows = new FeatureRow[count];
        for (var i = 0; i < count; i++)
        {
            var label = reader.ReadInt32();
            var length = reader.ReadSingle();
            var features = new float[dimension];
            for (var k = 0; k < dimension; k++) features[k] = reader.ReadSingle();
            rows[i] = new FeatureRow(label, length, features);
        }
        return rows;
    }
}

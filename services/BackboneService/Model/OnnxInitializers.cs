using System.Buffers.Binary;
using Onnx;

namespace Graft.Backbone.Model;

/// <summary>Reads constant tensors (e.g. a mean image) out of ONNX files.</summary>
public static class OnnxInitializers
{
    /// <summary>Reads the float initializer <paramref name="name"/> of the ONNX file at <paramref name="path"/>,
    /// checking it has the expected shape.</summary>
    public static float[] ReadFloats(string path, string name, long[] expectedShape)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ONNX file '{path}' (holding initializer '{name}') does not exist.", path);
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        var tensor = model.Graph.Initializer.FirstOrDefault(t => t.Name == name)
            ?? throw new InvalidOperationException($"ONNX file '{path}' has no initializer '{name}'; it has {string.Join(", ", model.Graph.Initializer.Select(t => t.Name))}.");
        if (!tensor.Dims.SequenceEqual(expectedShape))
        {
            throw new InvalidOperationException($"Initializer '{name}' in '{path}' has shape [{string.Join(",", tensor.Dims)}]; expected [{string.Join(",", expectedShape)}].");
        }
        if (tensor.DataType != (int)TensorProto.Types.DataType.Float)
        {
            throw new InvalidOperationException($"Initializer '{name}' in '{path}' is not float32.");
        }
        if (tensor.FloatData.Count > 0) return [.. tensor.FloatData];
        var raw = tensor.RawData.Span;
        var values = new float[raw.Length / sizeof(float)];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = BinaryPrimitives.ReadSingleLittleEndian(raw.Slice(i * sizeof(float), sizeof(float)));
        }
        return values;
    }
}

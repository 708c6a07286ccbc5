using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace Graft.Backbone.Quantization;

/// <summary>Reading and writing initializer data on the ONNX protobuf classes (little-endian raw data, as x64 holds it).</summary>
internal static class OnnxTensors
{
    public const int Float = (int)TensorProto.Types.DataType.Float;
    public const int UInt8 = (int)TensorProto.Types.DataType.Uint8;
    public const int Int8 = (int)TensorProto.Types.DataType.Int8;
    public const int Int32 = (int)TensorProto.Types.DataType.Int32;

    public static float[] ReadFloats(TensorProto tensor)
    {
        if (tensor.DataType != Float) throw new InvalidOperationException($"Initializer '{tensor.Name}' is not float32.");
        return tensor.FloatData.Count > 0 ? [.. tensor.FloatData] : MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
    }

    public static TensorProto Floats(string name, IEnumerable<long> dims, ReadOnlySpan<float> values) =>
        Raw(name, Float, dims, MemoryMarshal.AsBytes(values));

    public static TensorProto Int8s(string name, IEnumerable<long> dims, ReadOnlySpan<sbyte> values) =>
        Raw(name, Int8, dims, MemoryMarshal.AsBytes(values));

    public static TensorProto Int32s(string name, IEnumerable<long> dims, ReadOnlySpan<int> values) =>
        Raw(name, Int32, dims, MemoryMarshal.AsBytes(values));

    public static TensorProto UInt8Scalar(string name, byte value) => Raw(name, UInt8, [], [value]);

    public static TensorProto FloatScalar(string name, float value) => Floats(name, [], [value]);

    private static TensorProto Raw(string name, int type, IEnumerable<long> dims, ReadOnlySpan<byte> bytes)
    {
        var tensor = new TensorProto { Name = name, DataType = type, RawData = ByteString.CopyFrom(bytes) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    public static NodeProto Node(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }

    public static AttributeProto IntAttribute(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
}

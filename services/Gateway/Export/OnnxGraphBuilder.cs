using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace Graft.Gateway.Export;

/// <summary>Appends standard ONNX nodes and constant tensors to a graph under one name prefix, so what Graft adds
/// never collides with the backbone's own tensor names. Thin on purpose: each method is one operator.</summary>
public sealed class OnnxGraphBuilder(GraphProto graph, string prefix)
{
    private int _next;

    public GraphProto Graph => graph;

    /// <summary>A fresh tensor name under the prefix, e.g. <c>graft/head/gemm_3</c>.</summary>
    public string Name(string hint) => $"{prefix}/{hint}_{_next++}";

    /// <summary>Adds a float32 initializer (little-endian raw data) and returns its name.</summary>
    public string Constant(string hint, float[] values, params long[] shape)
    {
        var tensor = new TensorProto { Name = Name(hint), DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
        tensor.Dims.AddRange(shape);
        graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>Adds an int64 initializer and returns its name.</summary>
    public string Constant(string hint, long[] values, params long[] shape)
    {
        var tensor = new TensorProto { Name = Name(hint), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Int64Data.AddRange(values);
        tensor.Dims.AddRange(shape);
        graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>Adds one node; its single output gets <paramref name="output"/> or a fresh name. Returns the output name.</summary>
    public string Node(string op, string[] inputs, string? output = null, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = Name(op.ToLowerInvariant()) };
        node.Input.AddRange(inputs);
        node.Output.Add(output ?? node.Name);
        node.Attribute.AddRange(attributes);
        graph.Node.Add(node);
        return node.Output[0];
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    /// <summary>A graph input or output description with a symbolic batch dimension first.</summary>
    public static ValueInfoProto Value(string name, TensorProto.Types.DataType type, string doc, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d is string param
                ? new TensorShapeProto.Types.Dimension { DimParam = param }
                : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture) });
        }
        return new ValueInfoProto
        {
            Name = name,
            DocString = doc,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}

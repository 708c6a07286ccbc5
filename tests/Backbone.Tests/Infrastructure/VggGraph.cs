using Google.Protobuf;
using Onnx;

namespace Graft.Backbone.Tests.Infrastructure;

/// <summary>Builds a VGG16-topology ONNX model in code: 13 3×3 convolutions with ReLU in five blocks, each ending in
/// a 2×2 max pool (224 → 7), then Flatten → fc6 (Gemm) → ReLU → Dropout → fc7 → ReLU → Dropout → fc8 → Softmax,
/// with small channel counts so it is cheap. Weights are random (the cut does not care).</summary>
public static class VggGraph
{
    /// <summary>Channels per block (VGG16 uses 64, 128, 256, 512, 512).</summary>
    public static readonly int[] BlockChannels = [4, 8, 8, 16, 16];

    /// <summary>Convolutions per block, as in VGG16.</summary>
    private static readonly int[] BlockConvs = [2, 2, 3, 3, 3];

    public const string Pool5 = "pool5";
    public const int Hidden = 32;
    public const int Classes = 10;

    public static int Pool5Channels => BlockChannels[^1];

    /// <summary>Parameters of fc6, fc7 and fc8 (weights and biases): what the cut must drop.</summary>
    public static long ClassifierParameters =>
        ((long)Pool5Channels * 7 * 7 * Hidden) + Hidden + ((long)Hidden * Hidden) + Hidden + ((long)Hidden * Classes) + Classes;

    public static ModelProto Build(int seed = 7)
    {
        var random = new Random(seed);
        var graph = new GraphProto { Name = "vgg16-small" };
        graph.Input.Add(Value("data", 1, 3, 224, 224));
        var current = "data";
        var inChannels = 3;
        var conv = 0;
        for (var block = 0; block < BlockChannels.Length; block++)
        {
            for (var j = 0; j < BlockConvs[block]; j++)
            {
                conv++;
                var w = Initializer(graph, $"conv{conv}_W", random, BlockChannels[block], inChannels, 3, 3);
                var b = Initializer(graph, $"conv{conv}_B", random, BlockChannels[block]);
                var node = Node("Conv", [current, w, b], $"conv{conv}");
                node.Attribute.Add(Ints("kernel_shape", 3, 3));
                node.Attribute.Add(Ints("pads", 1, 1, 1, 1));
                graph.Node.Add(node);
                graph.Node.Add(Node("Relu", [$"conv{conv}"], $"relu{conv}"));
                current = $"relu{conv}";
                inChannels = BlockChannels[block];
            }
            var pool = Node("MaxPool", [current], block == BlockChannels.Length - 1 ? Pool5 : $"pool{block + 1}");
            pool.Attribute.Add(Ints("kernel_shape", 2, 2));
            pool.Attribute.Add(Ints("strides", 2, 2));
            graph.Node.Add(pool);
            current = pool.Output[0];
        }
        graph.Node.Add(Node("Flatten", [current], "flatten"));
        var features = Pool5Channels * 7 * 7;
        AddGemm(graph, random, "flatten", "fc6", features, Hidden);
        graph.Node.Add(Node("Relu", ["fc6"], "relu6"));
        graph.Node.Add(Node("Dropout", ["relu6"], "drop6"));
        AddGemm(graph, random, "drop6", "fc7", Hidden, Hidden);
        graph.Node.Add(Node("Relu", ["fc7"], "relu7"));
        graph.Node.Add(Node("Dropout", ["relu7"], "drop7"));
        AddGemm(graph, random, "drop7", "fc8", Hidden, Classes);
        graph.Node.Add(Node("Softmax", ["fc8"], "prob"));
        graph.Output.Add(Value("prob", 1, Classes));

        var model = new ModelProto { IrVersion = 7, ProducerName = "graft-tests", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return model;
    }

    public static string WriteTemp(ModelProto model)
    {
        var path = Path.Combine(Path.GetTempPath(), $"graft-vgg-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }

    private static void AddGemm(GraphProto graph, Random random, string input, string output, int inFeatures, int outFeatures)
    {
        var w = Initializer(graph, $"{output}_W", random, outFeatures, inFeatures);
        var b = Initializer(graph, $"{output}_B", random, outFeatures);
        var gemm = Node("Gemm", [input, w, b], output);
        gemm.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        graph.Node.Add(gemm);
    }

    private static string Initializer(GraphProto graph, string name, Random random, params int[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims.Select(d => (long)d));
        var count = dims.Aggregate(1, (a, d) => a * d);
        var fanIn = dims.Length > 1 ? dims.Skip(1).Aggregate(1, (a, d) => a * d) : 1;
        var scale = (float)Math.Sqrt(2.0 / fanIn);
        for (var i = 0; i < count; i++) tensor.FloatData.Add(dims.Length > 1 ? (float)((random.NextDouble() * 2) - 1) * scale : 0.01f);
        graph.Initializer.Add(tensor);
        return name;
    }

    private static NodeProto Node(string op, string[] inputs, string output)
    {
        var node = new NodeProto { OpType = op, Name = output };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        return node;
    }

    private static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private static ValueInfoProto Value(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims.Select(d => new TensorShapeProto.Types.Dimension { DimValue = d }));
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}

using System.Buffers.Binary;
using Onnx;
using TorchSharp;
using Graft.Heads.Model;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Graft.Heads.Tails;

/// <summary>
/// The tail of a backbone (the sub-graph from a cut point to the final features) as a trainable TorchSharp module,
/// converted generically from its ONNX graph through an op table and initialised from the graph's own pretrained
/// weights. Batch-norm statistics stay frozen (inference form in training too): with a few hundred images, updating
/// them would swap ImageNet's statistics for noisy ones. The affine batch-norm weights, convolutions and linear layers
/// train. The output is flattened per input, as the backbone's features are.
/// </summary>
public sealed class OnnxTail : nn.Module<Tensor, Tensor>
{
    /// <summary>The ops the converter knows.</summary>
    public static IReadOnlyCollection<string> SupportedOps { get; } =
    [
        "Conv", "BatchNormalization", "Relu", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
        "Gemm", "MatMul", "Identity", "Dropout", "Sigmoid",
    ];

    private readonly string _input;
    private readonly string _output;
    private readonly List<Step> _steps = [];
    // Where each trainable tensor came from, so the trained values can be written back into the graph.
    private readonly List<(string Initializer, Func<Tensor> Value)> _writeBack = [];

    private OnnxTail(string input, string output) : base("tail")
    {
        _input = input;
        _output = output;
    }

    /// <summary>Input shape without the batch dimension (the cut tensor's shape).</summary>
    public long[] InputShape { get; private init; } = [];

    /// <summary>Parses and converts an ONNX tail (one graph input, one graph output).</summary>
    /// <exception cref="TailConversionException">The graph is malformed or uses an op outside <see cref="SupportedOps"/>.</exception>
    public static OnnxTail FromOnnx(byte[] onnx)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(onnx);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            throw new TailConversionException($"The tail is not a valid ONNX model: {e.Message}");
        }
        return FromGraph(model.Graph);
    }

    /// <summary>Converts an ONNX tail graph (one computed input, one output).</summary>
    /// <exception cref="TailConversionException">The graph is malformed or uses an op outside <see cref="SupportedOps"/>.</exception>
    public static OnnxTail FromGraph(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var inputs = graph.Input.Where(i => !initializers.ContainsKey(i.Name)).ToList();
        if (inputs.Count != 1 || graph.Output.Count != 1)
        {
            throw new TailConversionException($"A tail graph needs exactly one data input and one output; this one has {inputs.Count} and {graph.Output.Count}.");
        }
        var unsupported = graph.Node.Select(n => n.OpType).Where(op => !SupportedOps.Contains(op)).Distinct().ToList();
        if (unsupported.Count > 0)
        {
            throw new TailConversionException(
                $"The tail uses ONNX op{(unsupported.Count > 1 ? "s" : "")} {string.Join(", ", unsupported)}, which the fine-tuning converter does not support " +
                $"(it knows {string.Join(", ", SupportedOps)}); use a shallower depth (probe or mlp) for this backbone.");
        }
        var shape = inputs[0].Type?.TensorType?.Shape?.Dim.Skip(1).Select(d => d.DimValue).ToArray() ?? [];
        var tail = new OnnxTail(inputs[0].Name, graph.Output[0].Name) { InputShape = shape };
        using (no_grad())
        {
            for (var i = 0; i < graph.Node.Count; i++)
            {
                tail._steps.Add(tail.Convert(graph.Node[i], i, initializers));
            }
        }
        tail.RegisterComponents();
        return tail;
    }

    /// <summary>Values per output row (the final features' dimension), found by running one zero input.</summary>
    public int OutputDimension()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var wasTraining = training;
        eval();
        var dimension = (int)call(zeros([1, .. InputShape])).shape[1];
        if (wasTraining) train();
        return dimension;
    }

    /// <summary>The tail graph <paramref name="original"/> (the ONNX this module was converted from) with this module's
    /// current (trained) weights written into its initializers: the same graph, so it converts back to this module
    /// and any ONNX runtime can run it.</summary>
    public byte[] ToOnnx(byte[] original)
    {
        var model = ModelProto.Parser.ParseFrom(original);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name);
        using var noGrad = no_grad();
        foreach (var (name, value) in _writeBack)
        {
            using var scope = NewDisposeScope();
            var target = initializers[name];
            var values = value().contiguous().cpu().data<float>().ToArray();
            var expected = target.Dims.Aggregate(1L, (a, d) => a * d);
            if (values.Length != expected)
            {
                throw new InvalidOperationException($"Initializer '{name}' holds {expected} values but the trained tensor has {values.Length}.");
            }
            target.FloatData.Clear();
            target.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return Google.Protobuf.MessageExtensions.ToByteArray(model);
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var values = new Dictionary<string, Tensor> { [_input] = input };
        foreach (var step in _steps)
        {
            values[step.Output] = step.Run(step.Inputs.Select(name => values[name]).ToArray());
        }
        return values[_output].flatten(1).MoveToOuterDisposeScope();
    }

    private sealed record Step(string[] Inputs, string Output, Func<Tensor[], Tensor> Run);

    private Step Convert(NodeProto node, int index, Dictionary<string, TensorProto> initializers)
    {
        var name = $"n{index}";
        var data = node.Input.Where(i => i.Length > 0 && !initializers.ContainsKey(i)).ToArray();
        Tensor Weight(int input) => input < node.Input.Count && initializers.TryGetValue(node.Input[input], out var t)
            ? ToTensor(t)
            : throw new TailConversionException($"{node.OpType} node '{node.Name}' needs input {input} as a constant weight.");
        Step Unary(Func<Tensor, Tensor> run) => new(data, node.Output[0], x => run(x[0]));

        switch (node.OpType)
        {
            case "Conv":
            {
                RequireNoAutoPad(node);
                var weight = Weight(1);
                var kernel = weight.shape[2..];
                var groups = Int(node, "group", 1);
                var strides = Ints(node, "strides", [1, 1]);
                var dilations = Ints(node, "dilations", [1, 1]);
                var (symmetric, pad) = Padding(node);
                var conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], (kernel[0], kernel[1]), stride: (strides[0], strides[1]),
                    padding: symmetric ? (pad[0], pad[1]) : (0, 0), dilation: (dilations[0], dilations[1]), groups: groups, bias: node.Input.Count > 2);
                conv.weight!.copy_(weight);
                if (node.Input.Count > 2) conv.bias!.copy_(Weight(2));
                _writeBack.Add((node.Input[1], () => conv.weight!));
                if (node.Input.Count > 2) _writeBack.Add((node.Input[2], () => conv.bias!));
                register_module(name, conv);
                // ONNX allows begin ≠ end padding (the CNTK ResNet18 export uses it on strided convolutions); torch does not.
                return symmetric
                    ? Unary(x => conv.call(x))
                    : Unary(x => conv.call(nn.functional.pad(x, [pad[1], pad[3], pad[0], pad[2]])));
            }
            case "BatchNormalization":
            {
                var epsilon = Float(node, "epsilon", 1e-5f);
                var bn = nn.BatchNorm2d(Weight(1).shape[0], eps: epsilon);
                bn.weight!.copy_(Weight(1));
                bn.bias!.copy_(Weight(2));
                bn.running_mean!.copy_(Weight(3));
                bn.running_var!.copy_(Weight(4));
                // The running statistics stay as they are; only the affine weights train.
                _writeBack.Add((node.Input[1], () => bn.weight!));
                _writeBack.Add((node.Input[2], () => bn.bias!));
                register_module(name, bn);
                return Unary(x => nn.functional.batch_norm(x, bn.running_mean!, bn.running_var!, bn.weight, bn.bias, training: false, eps: epsilon));
            }
            case "Relu":
                return Unary(x => nn.functional.relu(x));
            case "Sigmoid":
                return Unary(x => x.sigmoid());
            case "Identity" or "Dropout":
                return Unary(x => x.alias());
            case "Add":
            {
                // An explicit alpha: add(b) alone hands libtorch a temporary Scalar (see TorchScalars).
                if (data.Length == 2) return new Step(data, node.Output[0], x => x[0].add(x[1], TorchScalars.One));
                var constant = node.Input.Select((input, i) => (input, i)).First(p => initializers.ContainsKey(p.input)).i;
                var addend = RegisterConstant($"{name}_constant", Weight(constant));
                return Unary(x => x.add(addend, TorchScalars.One));
            }
            case "MaxPool":
            {
                RequireNoAutoPad(node);
                var kernel = Ints(node, "kernel_shape", null);
                var strides = Ints(node, "strides", [1, 1]);
                var (symmetric, pad) = Padding(node);
                var ceil = Int(node, "ceil_mode", 0) == 1;
                return symmetric
                    ? Unary(x => nn.functional.max_pool2d(x, kernel, strides, [pad[0], pad[1]], ceil_mode: ceil))
                    : Unary(x => nn.functional.max_pool2d(
                        nn.functional.pad(x, [pad[1], pad[3], pad[0], pad[2]], value: double.NegativeInfinity), kernel, strides, ceil_mode: ceil));
            }
            case "AveragePool":
            {
                RequireNoAutoPad(node);
                var kernel = Ints(node, "kernel_shape", null);
                var strides = Ints(node, "strides", [1, 1]);
                var (symmetric, pad) = Padding(node);
                var includePad = Int(node, "count_include_pad", 0) == 1;
                if (!symmetric) throw new TailConversionException($"AveragePool node '{node.Name}' has asymmetric padding, which the converter does not support.");
                var ceil = Int(node, "ceil_mode", 0) == 1;
                return Unary(x => nn.functional.avg_pool2d(x, kernel, strides, [pad[0], pad[1]], ceil_mode: ceil, count_include_pad: includePad));
            }
            case "GlobalAveragePool":
                return Unary(x => x.mean([2, 3], keepdim: true));
            case "Flatten":
            {
                var axis = Int(node, "axis", 1);
                return Unary(x => x.reshape(x.shape[..(int)axis].Aggregate(1L, (a, d) => a * d), -1));
            }
            case "Reshape":
            {
                var target = ToLongs(initializers.GetValueOrDefault(node.Input[1])
                    ?? throw new TailConversionException($"Reshape node '{node.Name}' needs a constant shape."));
                return Unary(x => x.reshape(target.Select((d, i) => d == 0 ? x.shape[i] : d).ToArray()));
            }
            case "Gemm":
            {
                if (Int(node, "transA", 0) != 0) throw new TailConversionException($"Gemm node '{node.Name}' transposes its data input, which the converter does not support.");
                var b = Weight(1);
                var w = Int(node, "transB", 0) == 1 ? b : b.t();
                var linear = nn.Linear(w.shape[1], w.shape[0], hasBias: node.Input.Count > 2);
                var transB = Int(node, "transB", 0) == 1;
                // Scalars held by `using` in each call: a temporary one can be finalized mid-call (see ScalarSafeAdam).
                var alpha = Float(node, "alpha", 1f);
                var beta = Float(node, "beta", 1f);
                using (var a = ((double)alpha).ToScalar()) linear.weight!.copy_(w.mul(a));
                if (node.Input.Count > 2)
                {
                    using var bScalar = ((double)beta).ToScalar();
                    linear.bias!.copy_(Weight(2).mul(bScalar));
                }
                _writeBack.Add((node.Input[1], () =>
                {
                    using var a = ((double)alpha).ToScalar();
                    return transB ? linear.weight!.div(a) : linear.weight!.div(a).t();
                }));
                if (node.Input.Count > 2)
                {
                    _writeBack.Add((node.Input[2], () =>
                    {
                        using var bScalar = ((double)beta).ToScalar();
                        return linear.bias!.div(bScalar);
                    }));
                }
                register_module(name, linear);
                return Unary(x => linear.call(x));
            }
            case "MatMul":
            {
                var w = Weight(1);
                var linear = nn.Linear(w.shape[0], w.shape[1], hasBias: false);
                linear.weight!.copy_(w.t());
                _writeBack.Add((node.Input[1], () => linear.weight!.t()));
                register_module(name, linear);
                return Unary(x => linear.call(x));
            }
            default:
                throw new TailConversionException($"ONNX op {node.OpType} (node '{node.Name}') is not supported by the fine-tuning converter.");
        }
    }

    private Tensor RegisterConstant(string name, Tensor value)
    {
        register_buffer(name, value);
        return value;
    }

    private static void RequireNoAutoPad(NodeProto node)
    {
        var autoPad = node.Attribute.FirstOrDefault(a => a.Name == "auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
        if (autoPad is not ("NOTSET" or "" or "VALID"))
        {
            throw new TailConversionException($"{node.OpType} node '{node.Name}' uses auto_pad={autoPad}; the converter needs explicit pads.");
        }
    }

    /// <summary>ONNX pads are [top, left, bottom, right]; symmetric when begin equals end on both axes.</summary>
    private static (bool Symmetric, long[] Pads) Padding(NodeProto node)
    {
        var pads = Ints(node, "pads", [0, 0, 0, 0]);
        return (pads[0] == pads[2] && pads[1] == pads[3], pads);
    }

    private static long Int(NodeProto node, string name, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == name)?.I ?? fallback;

    private static float Float(NodeProto node, string name, float fallback) => node.Attribute.FirstOrDefault(a => a.Name == name)?.F ?? fallback;

    private static long[] Ints(NodeProto node, string name, long[]? fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name)?.Ints.ToArray()
        ?? fallback
        ?? throw new TailConversionException($"{node.OpType} node '{node.Name}' has no '{name}' attribute.");

    /// <summary>A float initializer as a tensor of its shape (float_data or little-endian raw_data).</summary>
    private static Tensor ToTensor(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float)
        {
            throw new TailConversionException($"Initializer '{t.Name}' is of ONNX type {t.DataType}; the converter needs float32 weights.");
        }
        float[] values;
        if (t.FloatData.Count > 0)
        {
            values = [.. t.FloatData];
        }
        else
        {
            var raw = t.RawData.Span;
            values = new float[raw.Length / sizeof(float)];
            for (var i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(raw.Slice(i * sizeof(float), sizeof(float)));
        }
        return tensor(values, [.. t.Dims]);
    }

    private static long[] ToLongs(TensorProto t)
    {
        if (t.Int64Data.Count > 0) return [.. t.Int64Data];
        var raw = t.RawData.Span;
        var values = new long[raw.Length / sizeof(long)];
        for (var i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt64LittleEndian(raw.Slice(i * sizeof(long), sizeof(long)));
        return values;
    }
}

/// <summary>A tail graph the converter cannot turn into a module (an unsupported op, a non-constant weight...);
/// the gRPC layer answers FAILED_PRECONDITION with the message.</summary>
public sealed class TailConversionException(string message) : Exception(message);

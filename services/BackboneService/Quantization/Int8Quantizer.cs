using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using SessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;
using static Graft.Backbone.Quantization.OnnxTensors;

namespace Graft.Backbone.Quantization;

/// <summary>How activation ranges are chosen from the calibration images.</summary>
public enum CalibrationMethod
{
    /// <summary>The smallest and largest value seen: one outlier stretches the range for every other value.</summary>
    MinMax,

    /// <summary>The range holding <see cref="QuantizationSettings.Percentile"/> % of the values seen (both tails for
    /// signed tensors): rare outliers clip, the common values keep more of the 256 levels.</summary>
    Percentile,
}

/// <summary>Settings of a static int8 quantization (part of the quantized model's cache key and fingerprint).</summary>
public sealed class QuantizationSettings
{
    public CalibrationMethod Method { get; set; } = CalibrationMethod.Percentile;

    /// <summary>Share of calibration values inside the range (Percentile only), e.g. 99.999.</summary>
    public double Percentile { get; set; } = 99.999;

    /// <summary>Most calibration images used.</summary>
    public int CalibrationImages { get; set; } = 32;

    public override string ToString() =>
        Method == CalibrationMethod.Percentile ? $"percentile {Percentile.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "min/max";
}

/// <summary>What a quantization did: the counts a person checks, and what stayed in float.</summary>
public sealed record QuantizationReport(int FoldedBatchNorms, int QuantizedConvs, int QuantizedAdds, int FusedRelus, int CalibrationImages,
    IReadOnlyList<string> FloatOps, string Settings)
{
    public override string ToString() =>
        $"int8 static QDQ ({Settings}, {CalibrationImages} calibration images): {QuantizedConvs} Conv and {QuantizedAdds} Add quantized, " +
        $"{FoldedBatchNorms} BatchNormalization folded, {FusedRelus} Relu folded into ranges" +
        (FloatOps.Count > 0 ? $"; left in float: {string.Join(", ", FloatOps)}" : "");
}

/// <summary>
/// Static int8 quantization of an ONNX CNN into a QDQ graph that ONNX Runtime fuses into int8 kernels
/// (QLinearConv, QLinearAdd). No .NET library does this, so it is written here on the ONNX protobuf classes:
/// batch norms fold into the convolutions before them; weights are int8, symmetric, one scale per output channel;
/// activations are uint8, one scale and zero point per tensor, from ranges calibrated on real images; a Relu after a
/// Conv or Add is removed and folded into that output's range (zero point 0 clamps negatives as the Relu did);
/// residual Adds are quantized too. Ops it cannot quantize run in float between DequantizeLinear/QuantizeLinear.
/// </summary>
public static class Int8Quantizer
{
    /// <summary>Per-axis DequantizeLinear needs opset 13.</summary>
    public const int MinimumOpset = 13;

    private const int Bins = 4096;

    // Ops whose opset 8..12 definitions read the same at opset 13 (after BatchNormalization's "spatial" is dropped).
    private static readonly HashSet<string> OpsetSafe =
        ["Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Mul", "Sum", "Concat", "Flatten", "Gemm",
         "MatMul", "LRN", "Identity", "Sigmoid", "Tanh", "LeakyRelu", "Softmax", "Transpose"];

    /// <summary>Quantizes a (cut) fp32 model. <paramref name="calibration"/> are preprocessed inputs, each [C,H,W] flattened.</summary>
    /// <exception cref="InvalidOperationException">The graph uses an op whose meaning changed before opset 13, or calibration failed.</exception>
    public static (ModelProto Model, QuantizationReport Report) Quantize(ModelProto fp32, string inputName, IReadOnlyList<long> inputShape,
        IReadOnlyList<float[]> calibration, QuantizationSettings settings)
    {
        if (calibration.Count == 0) throw new InvalidOperationException("Quantization needs at least one calibration image.");
        var model = fp32.Clone();
        UpgradeOpset(model);
        var graph = model.Graph;
        var folded = FoldBatchNorms(graph);
        var plan = Plan.Build(graph);
        var ranges = Calibrate(model, inputName, inputShape, calibration, plan.Calibrated, settings);
        var quantized = Emit(model, plan, ranges);
        var floatOps = quantized.Graph.Node.Select(n => n.OpType)
            .Where(op => op is not ("QuantizeLinear" or "DequantizeLinear" or "Conv" or "Add" or "MaxPool"))
            .Distinct().Order().ToList();
        var report = new QuantizationReport(folded, plan.Convs.Count, plan.Adds.Count, plan.FusedRelus.Count, calibration.Count, floatOps, settings.ToString());
        return (quantized, report);
    }

    private static void UpgradeOpset(ModelProto model)
    {
        var opset = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx");
        if (opset is null) model.OpsetImport.Add(opset = new OperatorSetIdProto { Domain = "", Version = MinimumOpset });
        if (opset.Version < MinimumOpset)
        {
            var unsafeOps = model.Graph.Node.Select(n => n.OpType).Where(op => !OpsetSafe.Contains(op)).Distinct().ToList();
            if (unsafeOps.Count > 0)
            {
                throw new InvalidOperationException(
                    $"The model uses opset {opset.Version}; quantizing needs opset {MinimumOpset}, and these ops may mean something else there: {string.Join(", ", unsafeOps)}. Convert the model to opset 13 or later first.");
            }
            opset.Version = MinimumOpset;
            foreach (var bn in model.Graph.Node.Where(n => n.OpType == "BatchNormalization"))
            {
                // "spatial" (opset < 9) is gone at 13; 1 (the only value ORT ever supported) is what 13 means.
                var spatial = bn.Attribute.FirstOrDefault(a => a.Name == "spatial");
                if (spatial is not null) bn.Attribute.Remove(spatial);
            }
        }
        if (model.IrVersion < 7) model.IrVersion = 7;
    }

    /// <summary>Folds every BatchNormalization that directly follows a Conv (whose output nothing else reads) into that
    /// Conv's weights and bias: w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β, per output channel.</summary>
    internal static int FoldBatchNorms(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var consumers = Consumers(graph);
        var producers = Producers(graph);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet();
        var removed = new List<NodeProto>();
        foreach (var bn in graph.Node.Where(n => n.OpType == "BatchNormalization" && n.Output.Count >= 1).ToList())
        {
            var x = bn.Input[0];
            if (!producers.TryGetValue(x, out var conv) || conv.OpType != "Conv" || consumers[x].Count != 1 || outputs.Contains(x)) continue;
            if (!bn.Input.Skip(1).Take(4).All(initializers.ContainsKey) || !initializers.TryGetValue(conv.Input[1], out var weight)) continue;
            var gamma = ReadFloats(initializers[bn.Input[1]]);
            var beta = ReadFloats(initializers[bn.Input[2]]);
            var mean = ReadFloats(initializers[bn.Input[3]]);
            var variance = ReadFloats(initializers[bn.Input[4]]);
            var epsilon = bn.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            var w = ReadFloats(weight);
            var channels = (int)weight.Dims[0];
            var perChannel = w.Length / channels;
            var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? ReadFloats(initializers[conv.Input[2]]) : new float[channels];
            var newBias = new float[channels];
            for (var m = 0; m < channels; m++)
            {
                var factor = gamma[m] / MathF.Sqrt(variance[m] + epsilon);
                for (var k = 0; k < perChannel; k++) w[m * perChannel + k] *= factor;
                newBias[m] = (bias[m] - mean[m]) * factor + beta[m];
            }
            var weightName = $"{conv.Input[1]}_folded";
            var biasName = $"{conv.Input[1]}_folded_bias";
            graph.Initializer.Add(Floats(weightName, weight.Dims, w));
            graph.Initializer.Add(Floats(biasName, [channels], newBias));
            conv.Input[1] = weightName;
            if (conv.Input.Count > 2) conv.Input[2] = biasName; else conv.Input.Add(biasName);
            conv.Output[0] = bn.Output[0];
            removed.Add(bn);
        }
        foreach (var bn in removed) graph.Node.Remove(bn);
        // Drop initializers nothing reads any more (the unfolded weights and the batch-norm statistics).
        var used = graph.Node.SelectMany(n => n.Input).ToHashSet();
        var stale = graph.Initializer.Where(t => !used.Contains(t.Name)).ToList();
        foreach (var t in stale) graph.Initializer.Remove(t);
        var staleInputs = graph.Input.Where(i => stale.Any(t => t.Name == i.Name)).ToList();
        foreach (var i in staleInputs) graph.Input.Remove(i);
        return removed.Count;
    }

    /// <summary>Which nodes are quantized, which Relus fold away, and which tensors get a quantization range.</summary>
    private sealed class Plan
    {
        public HashSet<NodeProto> Convs { get; } = [];
        public HashSet<NodeProto> Adds { get; } = [];
        public HashSet<NodeProto> MaxPools { get; } = [];
        /// <summary>Relu node → the Conv/Add it folds into (which then writes the Relu's output).</summary>
        public Dictionary<NodeProto, NodeProto> FusedRelus { get; } = [];
        /// <summary>Tensors that pass through QuantizeLinear/DequantizeLinear (names after Relu folding).</summary>
        public HashSet<string> Quantized { get; } = [];
        /// <summary>MaxPool outputs share their input's range (ORT then runs MaxPool on uint8 directly).</summary>
        public Dictionary<string, string> SameRangeAs { get; } = [];
        /// <summary>Tensors whose range comes from calibration.</summary>
        public List<string> Calibrated => Quantized.Where(t => !SameRangeAs.ContainsKey(t)).ToList();

        public static Plan Build(GraphProto graph)
        {
            var plan = new Plan();
            var initializers = graph.Initializer.ToDictionary(t => t.Name);
            var consumers = Consumers(graph);
            var producers = Producers(graph);
            var outputs = graph.Output.Select(o => o.Name).ToHashSet();
            bool IsActivation(string t) => t.Length > 0 && !initializers.ContainsKey(t);

            foreach (var node in graph.Node)
            {
                if (node.OpType == "Conv" && IsActivation(node.Input[0]) && initializers.TryGetValue(node.Input[1], out var w)
                    && w.DataType == Float && w.Dims.Count >= 3 && (node.Input.Count < 3 || node.Input[2].Length == 0 || initializers.ContainsKey(node.Input[2])))
                {
                    plan.Convs.Add(node);
                }
                else if (node.OpType == "Add" && node.Input.Count == 2 && node.Input.All(IsActivation))
                {
                    plan.Adds.Add(node);
                }
            }
            foreach (var relu in graph.Node.Where(n => n.OpType == "Relu"))
            {
                var x = relu.Input[0];
                if (producers.TryGetValue(x, out var p) && (plan.Convs.Contains(p) || plan.Adds.Contains(p)) && consumers[x].Count == 1 && !outputs.Contains(x))
                {
                    plan.FusedRelus[relu] = p;
                }
            }
            var fusedOutput = plan.FusedRelus.ToDictionary(kv => kv.Value, kv => kv.Key.Output[0]);
            foreach (var node in graph.Node)
            {
                if (plan.Convs.Contains(node) || plan.Adds.Contains(node))
                {
                    foreach (var input in node.Input.Take(plan.Convs.Contains(node) ? 1 : 2)) plan.Quantized.Add(input);
                    var output = fusedOutput.GetValueOrDefault(node, node.Output[0]);
                    if (!outputs.Contains(output)) plan.Quantized.Add(output);
                }
                else if (node.OpType == "MaxPool" && node.Output.Count == 1 && plan.Quantized.Contains(node.Input[0]) && !outputs.Contains(node.Output[0]))
                {
                    plan.MaxPools.Add(node);
                    plan.Quantized.Add(node.Output[0]);
                    plan.SameRangeAs[node.Output[0]] = node.Input[0];
                }
            }
            // A Relu output that is quantized but also fed through a MaxPool chain is already covered; resolve chains.
            foreach (var key in plan.SameRangeAs.Keys.ToList())
            {
                var source = plan.SameRangeAs[key];
                while (plan.SameRangeAs.TryGetValue(source, out var earlier)) source = earlier;
                plan.SameRangeAs[key] = source;
            }
            return plan;
        }
    }

    /// <summary>Runs the float model over the calibration inputs with every calibrated tensor as an extra output and
    /// returns each tensor's range.</summary>
    private static Dictionary<string, (float Low, float High)> Calibrate(ModelProto model, string inputName, IReadOnlyList<long> inputShape,
        IReadOnlyList<float[]> calibration, List<string> tensors, QuantizationSettings settings)
    {
        var probe = model.Clone();
        var existing = probe.Graph.Output.Select(o => o.Name).ToHashSet();
        foreach (var t in tensors.Where(t => !existing.Contains(t) && t != inputName))
        {
            probe.Graph.Output.Add(new ValueInfoProto
            {
                Name = t,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float } },
            });
        }
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC,
            IntraOpNumThreads = Math.Max(1, Environment.ProcessorCount),
            InterOpNumThreads = 1,
        };
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        using var session = new InferenceSession(probe.ToByteArray(), options);
        // The graph input's range is read from the inputs themselves; every other tensor is fetched from the run.
        var fetched = tensors.Where(t => t != inputName).ToArray();
        var names = tensors.ToArray();
        var low = names.ToDictionary(n => n, _ => float.PositiveInfinity);
        var high = names.ToDictionary(n => n, _ => float.NegativeInfinity);

        void Each(Action<string, ReadOnlySpan<float>> visit)
        {
            foreach (var input in calibration)
            {
                using var value = OrtValue.CreateTensorValueFromMemory(input, [1, .. inputShape]);
                using var runOptions = new RunOptions();
                using var results = session.Run(runOptions, [inputName], [value], fetched);
                for (var i = 0; i < fetched.Length; i++) visit(fetched[i], results[i].GetTensorDataAsSpan<float>());
                if (names.Contains(inputName)) visit(inputName, input);
            }
        }

        Each((name, values) =>
        {
            float lo = low[name], hi = high[name];
            foreach (var v in values) { if (v < lo) lo = v; if (v > hi) hi = v; }
            (low[name], high[name]) = (lo, hi);
        });
        var ranges = names.ToDictionary(n => n, n => (Low: Math.Min(0f, low[n]), High: Math.Max(0f, high[n])));
        if (settings.Method == CalibrationMethod.MinMax) return ranges;

        // Second pass: a histogram per tensor over its min/max range, then the range holding the asked share.
        var histograms = names.ToDictionary(n => n, _ => new long[Bins]);
        Each((name, values) =>
        {
            var (lo, hi) = ranges[name];
            if (hi <= lo) return;
            var h = histograms[name];
            var perBin = Bins / (hi - lo);
            foreach (var v in values) h[Math.Clamp((int)((v - lo) * perBin), 0, Bins - 1)]++;
        });
        var tail = (100 - settings.Percentile) / 100;
        return names.ToDictionary(n => n, n =>
        {
            var (lo, hi) = ranges[n];
            if (hi <= lo) return (lo, hi);
            var h = histograms[n];
            var total = h.Sum();
            var width = (hi - lo) / Bins;
            // Upper bound: the smallest bin edge with at most `tail` of the values above it.
            long above = 0;
            var top = Bins;
            while (top > 1 && above + h[top - 1] <= tail * total) above += h[--top];
            var newHigh = lo + top * width;
            var newLow = lo;
            if (lo < 0)
            {
                long below = 0;
                var bottom = 0;
                while (bottom < Bins - 1 && below + h[bottom] <= tail * total) below += h[bottom++];
                newLow = lo + bottom * width;
            }
            return (Math.Min(0f, newLow), Math.Max(0f, Math.Min(hi, newHigh)));
        });
    }

    /// <summary>uint8 asymmetric parameters for a range that includes 0.</summary>
    public static (float Scale, byte ZeroPoint) ActivationParameters(float low, float high)
    {
        low = Math.Min(0, low);
        high = Math.Max(0, high);
        if (high - low < 1e-12f) return (1f, 0);
        var scale = (high - low) / 255f;
        var zeroPoint = (byte)Math.Clamp(MathF.Round(-low / scale), 0, 255);
        return (scale, zeroPoint);
    }

    /// <summary>int8 symmetric per-output-channel quantization of a weight tensor [M, ...]: one scale per channel,
    /// zero point 0, values in [-127, 127].</summary>
    public static (sbyte[] Values, float[] Scales) QuantizeWeights(float[] weights, int channels)
    {
        var perChannel = weights.Length / channels;
        var values = new sbyte[weights.Length];
        var scales = new float[channels];
        for (var m = 0; m < channels; m++)
        {
            var slice = weights.AsSpan(m * perChannel, perChannel);
            var max = 0f;
            foreach (var w in slice) max = Math.Max(max, Math.Abs(w));
            var scale = max > 0 ? max / 127f : 1f;
            scales[m] = scale;
            for (var k = 0; k < perChannel; k++) values[m * perChannel + k] = (sbyte)Math.Clamp(MathF.Round(slice[k] / scale), -127, 127);
        }
        return (values, scales);
    }

    private static ModelProto Emit(ModelProto folded, Plan plan, Dictionary<string, (float Low, float High)> ranges)
    {
        var model = folded.Clone();
        var source = folded.Graph;
        var graph = model.Graph;
        graph.Node.Clear();
        var initializers = source.Initializer.ToDictionary(t => t.Name);
        var replacedInitializers = new HashSet<string>();
        var nodes = graph.Node;
        var serial = 0;
        string Unique(string stem) => $"{stem}_{serial++}";

        // One scale/zero-point pair per quantized tensor (MaxPool outputs reuse their input's).
        string Root(string t) => plan.SameRangeAs.GetValueOrDefault(t, t);
        foreach (var t in plan.Quantized.Select(Root).Distinct())
        {
            var (scale, zeroPoint) = ActivationParameters(ranges[t].Low, ranges[t].High);
            graph.Initializer.Add(FloatScalar($"{t}_scale", scale));
            graph.Initializer.Add(UInt8Scalar($"{t}_zero_point", zeroPoint));
        }
        float Scale(string t) => ReadFloats(graph.Initializer.First(i => i.Name == $"{Root(t)}_scale"))[0];

        void Quantize(string t) => nodes.Add(Node("QuantizeLinear", Unique($"{t}_Q"), [t, $"{Root(t)}_scale", $"{Root(t)}_zero_point"], [$"{t}_quantized"]));
        string Dequantize(string t)
        {
            // One DequantizeLinear per consumer: ORT fuses a DQ → op → Q group only when the DQ feeds that op alone.
            var output = Unique($"{t}_dequantized");
            nodes.Add(Node("DequantizeLinear", output, [$"{t}_quantized", $"{Root(t)}_scale", $"{Root(t)}_zero_point"], [output]));
            return output;
        }

        var graphInputs = source.Input.Select(i => i.Name).Where(n => !initializers.ContainsKey(n));
        foreach (var input in graphInputs.Where(plan.Quantized.Contains)) Quantize(input);
        var fusedOutput = plan.FusedRelus.ToDictionary(kv => kv.Value, kv => kv.Key.Output[0]);
        foreach (var original in source.Node)
        {
            if (plan.FusedRelus.ContainsKey(original)) continue;
            var node = original.Clone();
            if (string.IsNullOrEmpty(node.Name)) node.Name = Unique(node.OpType);
            if (fusedOutput.TryGetValue(original, out var reluOutput)) node.Output[0] = reluOutput;
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (plan.Quantized.Contains(node.Input[i])) node.Input[i] = Dequantize(node.Input[i]);
            }
            if (plan.Convs.Contains(original))
            {
                var weight = initializers[original.Input[1]];
                var channels = (int)weight.Dims[0];
                var (values, scales) = QuantizeWeights(ReadFloats(weight), channels);
                var w = weight.Name;
                graph.Initializer.Add(Int8s($"{w}_quantized", weight.Dims, values));
                graph.Initializer.Add(Floats($"{w}_scale", [channels], scales));
                graph.Initializer.Add(Int8s($"{w}_zero_point", [channels], new sbyte[channels]));
                replacedInitializers.Add(w);
                nodes.Add(Node("DequantizeLinear", $"{w}_dequantize", [$"{w}_quantized", $"{w}_scale", $"{w}_zero_point"], [$"{w}_dequantized"], IntAttribute("axis", 0)));
                node.Input[1] = $"{w}_dequantized";
                if (original.Input.Count > 2 && original.Input[2].Length > 0)
                {
                    // Bias in int32 at scale x_scale · w_scale[m], as QLinearConv adds it to the int32 accumulator.
                    var bias = ReadFloats(initializers[original.Input[2]]);
                    var xScale = Scale(original.Input[0]);
                    var biasScales = scales.Select(s => xScale * s).ToArray();
                    var quantizedBias = bias.Select((b, m) => (int)Math.Clamp(Math.Round(b / biasScales[m]), int.MinValue, int.MaxValue)).ToArray();
                    var b0 = original.Input[2];
                    graph.Initializer.Add(Int32s($"{b0}_quantized", [channels], quantizedBias));
                    graph.Initializer.Add(Floats($"{b0}_scale", [channels], biasScales));
                    graph.Initializer.Add(Int32s($"{b0}_zero_point", [channels], new int[channels]));
                    replacedInitializers.Add(b0);
                    nodes.Add(Node("DequantizeLinear", $"{b0}_dequantize", [$"{b0}_quantized", $"{b0}_scale", $"{b0}_zero_point"], [$"{b0}_dequantized"], IntAttribute("axis", 0)));
                    node.Input[2] = $"{b0}_dequantized";
                }
            }
            nodes.Add(node);
            foreach (var output in node.Output.Where(plan.Quantized.Contains)) Quantize(output);
        }
        var stale = graph.Initializer.Where(t => replacedInitializers.Contains(t.Name)).ToList();
        foreach (var t in stale) graph.Initializer.Remove(t);
        var staleInputs = graph.Input.Where(i => replacedInitializers.Contains(i.Name)).ToList();
        foreach (var i in staleInputs) graph.Input.Remove(i);
        graph.ValueInfo.Clear();
        return model;
    }

    private static Dictionary<string, List<NodeProto>> Consumers(GraphProto graph)
    {
        var map = new Dictionary<string, List<NodeProto>>();
        foreach (var node in graph.Node)
        {
            foreach (var input in node.Input)
            {
                if (!map.TryGetValue(input, out var list)) map[input] = list = [];
                list.Add(node);
            }
        }
        foreach (var output in graph.Node.SelectMany(n => n.Output)) map.TryAdd(output, []);
        return map;
    }

    private static Dictionary<string, NodeProto> Producers(GraphProto graph)
    {
        var map = new Dictionary<string, NodeProto>();
        foreach (var node in graph.Node) foreach (var output in node.Output) map[output] = node;
        return map;
    }
}

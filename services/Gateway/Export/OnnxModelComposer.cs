using System.Globalization;
using System.Text.Json;
using Graft.V1;
using Onnx;
using static Graft.Gateway.Export.OnnxGraphBuilder;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Graft.Gateway.Export;

/// <summary>A head version as HeadService exports it, with its weight tensors assembled by name
/// (<c>layers.&lt;i&gt;.weight</c> [out, in], <c>layers.&lt;i&gt;.bias</c> [out]).</summary>
public sealed record HeadParameters(HeadExport Head, IReadOnlyDictionary<string, float[]> Tensors);

/// <summary>A sub-graph placed between the backbone's cut tensor and the head's features: receives the builder and
/// the name of its input tensor, returns the name of its output tensor. The hook for a head that carries its own
/// fine-tuned convolutional tail (the backbone is then exported at the earlier cut point).</summary>
public delegate string GraphStage(OnnxGraphBuilder builder, string input);

/// <summary>Composes one self-contained ONNX model: [preprocessing] → the served backbone graph, as it is (an int8 QDQ
/// graph stays int8) → [tail] → Flatten → the head (standardise, Gemm/Relu layers, Softmax + ArgMax or the
/// regressor's de-standardisation). Only standard <c>ai.onnx</c> operators that exist with these semantics since
/// opset 7, so the backbone's own opset is kept: nothing in the backbone is re-versioned.</summary>
public static class OnnxModelComposer
{
    /// <summary>Graph input names for the two input kinds, and the output names.</summary>
    public const string PixelsInput = "pixels";
    public const string TensorInput = "image";
    public const string ProbabilitiesOutput = "probabilities";
    public const string ClassIndexOutput = "class_index";
    public const string ValueOutput = "value";

    /// <summary>Lowest ai.onnx opset the added operators are written for (numpy broadcasting of Add/Sub/Mul/Div,
    /// Gemm with a broadcast bias); ONNX Runtime itself supports nothing older.</summary>
    public const long MinimumOpset = 7;

    private const string Batch = "N";

    /// <summary>Builds the model. <paramref name="backbone"/> is the served graph (modified and returned).</summary>
    /// <exception cref="InvalidOperationException">The parts do not fit together (named in the message).</exception>
    public static ModelProto Compose(ModelProto backbone, ServedGraph served, HeadParameters head, ExportInput input, GraphStage? tail = null)
    {
        var opset = backbone.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0;
        if (opset < MinimumOpset)
        {
            throw new InvalidOperationException($"The backbone graph uses ai.onnx opset {opset}; export needs at least {MinimumOpset}.");
        }
        var info = head.Head.Info;
        if (info.InputDimension != served.FeatureDimension)
        {
            throw new InvalidOperationException($"Head '{info.Name}' v{info.Version} takes {info.InputDimension} features; the backbone gives {served.FeatureDimension}.");
        }
        var graph = backbone.Graph;
        var backboneInput = graph.Input.FirstOrDefault(i => i.Name == served.InputName)
            ?? throw new InvalidOperationException($"The backbone graph has no input '{served.InputName}'.");
        graph.Input.Remove(backboneInput);
        graph.Output.Clear();

        var (channels, height, width) = (served.InputShape[0], served.InputShape[1], served.InputShape[2]);
        if (input == ExportInput.Tensor)
        {
            graph.Input.Add(Value(TensorInput, DataType.Float, $"float32 [N, {channels}, {height}, {width}], preprocessed: {served.Preprocessing.Description}",
                Batch, channels, height, width));
            new OnnxGraphBuilder(graph, "graft/input").Node("Identity", [TensorInput], served.InputName);
        }
        else
        {
            graph.Input.Add(Value(PixelsInput, DataType.Uint8,
                $"uint8 [N, {height}, {width}, 3], RGB 0-255, already resized to {width}x{height} (Graft: {ResizePart(served.Preprocessing.Description)})",
                Batch, height, width, 3));
            AddPreprocessing(new OnnxGraphBuilder(graph, "graft/preprocess"), served, output: served.InputName);
        }

        var features = served.OutputName;
        if (tail is not null)
        {
            features = tail(new OnnxGraphBuilder(graph, "graft/tail"), features);
        }
        var builder = new OnnxGraphBuilder(graph, "graft/head");
        features = builder.Node("Flatten", [features], attributes: Int("axis", 1));
        AddHead(builder, head, features, graph);

        graph.Name = $"graft {info.Name} v{info.Version}";
        graph.DocString = $"Graft head '{info.Name}' v{info.Version} ({KindName(info.Kind)}) on backbone {served.Fingerprint}.";
        graph.ValueInfo.Clear();
        backbone.ProducerName = "graft";
        backbone.ModelVersion = info.Version;
        backbone.DocString = graph.DocString;
        backbone.MetadataProps.Clear();
        foreach (var (key, value) in Metadata(served, head, input))
        {
            backbone.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        }
        return backbone;
    }

    /// <summary>The model's self-description (ONNX <c>metadata_props</c>), as ONNX Runtime's <c>ModelMetadata.CustomMetadataMap</c> shows it.</summary>
    public static IReadOnlyList<(string Key, string Value)> Metadata(ServedGraph served, HeadParameters head, ExportInput input)
    {
        var info = head.Head.Info;
        var list = new List<(string, string)>
        {
            ("graft.head", info.Name),
            ("graft.version", info.Version.ToString(CultureInfo.InvariantCulture)),
            ("graft.kind", KindName(info.Kind)),
            ("graft.description", info.Spec?.Description ?? ""),
            ("graft.created", info.Created?.ToDateTimeOffset().ToString("O", CultureInfo.InvariantCulture) ?? ""),
            ("backbone", served.Name),
            ("backbone_fingerprint", served.Fingerprint),
            ("input", input == ExportInput.Tensor
                ? $"{TensorInput}: float32 [N, 3, {served.InputShape[1]}, {served.InputShape[2]}], already preprocessed (see preprocessing)"
                : $"{PixelsInput}: uint8 [N, {served.InputShape[1]}, {served.InputShape[2]}, 3], RGB 0-255, resized and cropped as the first steps of preprocessing say; the rest runs inside the model"),
            ("preprocessing", served.Preprocessing.Description),
            ("outputs", info.Kind == HeadKind.Classifier
                ? $"{ProbabilitiesOutput}: float32 [N, {info.Labels.Count}] softmax over labels; {ClassIndexOutput}: int64 [N] index of the most probable label"
                : $"{ValueOutput}: float32 [N], in the units of the training targets"),
            ("metrics", Google.Protobuf.JsonFormatter.Default.Format(info.Metrics ?? new HeadMetrics())),
        };
        if (info.Kind == HeadKind.Classifier)
        {
            list.Add(("labels", JsonSerializer.Serialize(info.Labels)));
        }
        return list;
    }

    /// <summary>RGB uint8 NHWC → the backbone's input, with the same float operations in the same order as the
    /// service's preprocessor: Cast, NHWC→NCHW, channel order, × scale, − mean image, − mean, × 1/std.</summary>
    private static void AddPreprocessing(OnnxGraphBuilder b, ServedGraph served, string output)
    {
        var p = served.Preprocessing;
        var (height, width) = (served.InputShape[1], served.InputShape[2]);
        var x = b.Node("Cast", [PixelsInput], attributes: Int("to", (long)DataType.Float));
        x = b.Node("Transpose", [x], attributes: Ints("perm", 0, 3, 1, 2));
        if (p.Bgr)
        {
            x = b.Node("Gather", [x, b.Constant("bgr", [2L, 1L, 0L], 3)], attributes: Int("axis", 1));
        }
        if (p.Scale != 1f)
        {
            x = b.Node("Mul", [x, b.Constant("scale", [p.Scale])]);
        }
        if (p.MeanImage.Count > 0)
        {
            if (p.MeanImage.Count != 3 * height * width)
            {
                throw new InvalidOperationException($"The backbone's mean image has {p.MeanImage.Count} values; its input needs 3x{height}x{width}.");
            }
            x = b.Node("Sub", [x, b.Constant("mean_image", [.. p.MeanImage], 1, 3, height, width)]);
        }
        if (p.Mean.Count == 3)
        {
            x = b.Node("Sub", [x, b.Constant("mean", [.. p.Mean], 1, 3, 1, 1)]);
        }
        if (p.Std.Count == 3)
        {
            // The service multiplies by 1/std (computed in float), so the model does the same.
            x = b.Node("Mul", [x, b.Constant("inv_std", p.Std.Select(s => 1f / s).ToArray(), 1, 3, 1, 1)]);
        }
        b.Node("Identity", [x], output);
    }

    /// <summary>(x − mean) / std, then Gemm (+ Relu) per layer, then the kind's output.</summary>
    private static void AddHead(OnnxGraphBuilder b, HeadParameters head, string features, GraphProto graph)
    {
        var h = head.Head;
        var info = h.Info;
        var dimension = info.InputDimension;
        if (h.FeatureMean.Count != dimension || h.FeatureStd.Count != dimension)
        {
            throw new InvalidOperationException($"Head '{info.Name}' v{info.Version} has {h.FeatureMean.Count}/{h.FeatureStd.Count} normalisation values for {dimension} features.");
        }
        var x = b.Node("Sub", [features, b.Constant("feature_mean", [.. h.FeatureMean], 1, dimension)]);
        x = b.Node("Div", [x, b.Constant("feature_std", [.. h.FeatureStd], 1, dimension)]);

        var outputs = info.Kind == HeadKind.Classifier ? info.Labels.Count : 1;
        var sizes = h.HiddenSizes.Append(outputs).ToList();
        long previous = dimension;
        for (var i = 0; i < sizes.Count; i++)
        {
            var weight = Tensor(head, $"layers.{i}.weight", sizes[i] * previous);
            var bias = Tensor(head, $"layers.{i}.bias", sizes[i]);
            // Gemm with transB keeps the weights in the stored [out, in] layout.
            x = b.Node("Gemm", [x, b.Constant($"layer{i}_weight", weight, sizes[i], previous), b.Constant($"layer{i}_bias", bias, sizes[i])],
                attributes: Int("transB", 1));
            if (i < sizes.Count - 1)
            {
                x = b.Node("Relu", [x]);
            }
            previous = sizes[i];
        }
        if (head.Tensors.Count != 2 * sizes.Count)
        {
            throw new InvalidOperationException($"Head '{info.Name}' v{info.Version} has {head.Tensors.Count} weight tensors; its {sizes.Count} layers need {2 * sizes.Count}.");
        }

        if (info.Kind == HeadKind.Classifier)
        {
            b.Node("Softmax", [x], ProbabilitiesOutput, Int("axis", 1));
            b.Node("ArgMax", [x], ClassIndexOutput, Int("axis", 1), Int("keepdims", 0));
            graph.Output.Add(Value(ProbabilitiesOutput, DataType.Float,
                $"softmax probabilities over the labels in metadata 'labels' ({string.Join(", ", info.Labels.Take(5))}{(info.Labels.Count > 5 ? ", ..." : "")})", Batch, outputs));
            graph.Output.Add(Value(ClassIndexOutput, DataType.Int64, "index of the most probable label in metadata 'labels'", Batch));
        }
        else
        {
            // Back to the units of the training targets: y = y' * std + mean.
            x = b.Node("Mul", [x, b.Constant("target_std", [(float)h.TargetStd])]);
            x = b.Node("Add", [x, b.Constant("target_mean", [(float)h.TargetMean])]);
            b.Node("Reshape", [x, b.Constant("flat", [-1L], 1)], ValueOutput);
            graph.Output.Add(Value(ValueOutput, DataType.Float, $"predicted {(string.IsNullOrEmpty(info.Spec?.Description) ? "value" : info.Spec.Description)}, in the units of the training targets", Batch));
        }
    }

    private static float[] Tensor(HeadParameters head, string name, long expectedLength)
    {
        if (!head.Tensors.TryGetValue(name, out var values) || values.Length != expectedLength)
        {
            throw new InvalidOperationException(
                $"Head '{head.Head.Info.Name}' v{head.Head.Info.Version} lacks tensor '{name}' with {expectedLength} values that its architecture needs.");
        }
        return values;
    }

    private static string KindName(HeadKind kind) => kind == HeadKind.Classifier ? "classifier" : "regressor";

    /// <summary>The resize part of a preprocessing description: everything before the channel order.</summary>
    private static string ResizePart(string description)
    {
        var parts = description.Split(", ");
        return string.Join(", ", parts.TakeWhile(p => p is not ("BGR" or "RGB")));
    }
}

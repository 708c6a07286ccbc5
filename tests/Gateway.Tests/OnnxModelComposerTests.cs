using Google.Protobuf;
using Graft.Gateway.Export;
using Graft.V1;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using static Graft.Gateway.Export.OnnxGraphBuilder;

namespace Graft.Gateway.Tests;

/// <summary>The composer on a tiny backbone (GlobalAveragePool over a 3×2×2 input) run by ONNX Runtime, against the
/// same arithmetic written out here: every head shape, both kinds, both input kinds, the tail hook, refusals.</summary>
public sealed class OnnxModelComposerTests
{
    private const int Height = 2, Width = 2, Features = 3;
    private static readonly float[] MeanImage = [.. Enumerable.Range(0, 3 * Height * Width).Select(i => i * 0.01f)];
    private static readonly float[] Mean = [0.485f, 0.456f, 0.406f];
    private static readonly float[] Std = [0.229f, 0.224f, 0.225f];

    public static TheoryData<HeadKind, int[], ExportInput> Shapes => new()
    {
        { HeadKind.Classifier, [], ExportInput.Pixels },
        { HeadKind.Classifier, [5, 4], ExportInput.Tensor },
        { HeadKind.Regressor, [], ExportInput.Tensor },
        { HeadKind.Regressor, [6], ExportInput.Pixels },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void A_composed_model_computes_preprocessing_backbone_and_head_as_written(HeadKind kind, int[] hidden, ExportInput input)
    {
        // Arrange
        var head = Head(kind, hidden, seed: hidden.Length * 10 + (int)kind);
        var pixels = Enumerable.Range(0, 2 * Height * Width * 3).Select(i => (byte)(i * 37 % 256)).ToArray();

        // Act
        var model = OnnxModelComposer.Compose(Backbone(opset: 9), Served(), head, input);
        var actual = Run(model, input, pixels);

        // Assert
        for (var n = 0; n < 2; n++)
        {
            var expected = Expected(head, pixels.AsSpan(n * Height * Width * 3, Height * Width * 3));
            for (var k = 0; k < expected.Length; k++)
            {
                // float32 against double: 1e-5 relative (absolute below 1).
                Assert.True(Math.Abs(expected[k] - actual[n][k]) <= 1e-5 * Math.Max(1, Math.Abs(expected[k])), $"image {n} output {k}: expected {expected[k]:R}, got {actual[n][k]:R}");
            }
        }
    }

    [Fact]
    public void A_tail_stage_runs_between_the_cut_and_the_head()
    {
        // Arrange: a "tail" that doubles the cut tensor, against the same head without it on doubled pixels' features.
        var head = Head(HeadKind.Regressor, [4], seed: 5);
        var pixels = Enumerable.Range(0, 2 * Height * Width * 3).Select(i => (byte)(i * 11 % 256)).ToArray();
        GraphStage doubling = (b, x) => b.Node("Mul", [x, b.Constant("two", [2f])]);

        // Act
        var actual = Run(OnnxModelComposer.Compose(Backbone(opset: 13), Served(), head, ExportInput.Pixels, doubling), ExportInput.Pixels, pixels);

        // Assert
        var expected = Expected(head, pixels.AsSpan(0, Height * Width * 3), featureScale: 2);
        Assert.True(Math.Abs(expected[0] - actual[0][0]) <= 1e-5 * Math.Max(1, Math.Abs(expected[0])), $"expected {expected[0]:R}, got {actual[0][0]:R}");
    }

    [Fact]
    public void Parts_that_do_not_fit_are_refused_with_the_reason()
    {
        // Arrange
        var head = Head(HeadKind.Classifier, [4], seed: 1);
        var narrow = head with { Head = head.Head.Clone() };
        narrow.Head.Info.InputDimension = Features + 1;
        var missing = head with { Tensors = head.Tensors.Where(t => t.Key != "layers.1.bias").ToDictionary() };

        // Act
        var oldOpset = Assert.Throws<InvalidOperationException>(() => OnnxModelComposer.Compose(Backbone(opset: 6), Served(), head, ExportInput.Pixels));
        var wrongWidth = Assert.Throws<InvalidOperationException>(() => OnnxModelComposer.Compose(Backbone(opset: 13), Served(), narrow, ExportInput.Pixels));
        var lacking = Assert.Throws<InvalidOperationException>(() => OnnxModelComposer.Compose(Backbone(opset: 13), Served(), missing, ExportInput.Pixels));

        // Assert
        Assert.Contains("opset 6", oldOpset.Message);
        Assert.Contains($"takes {Features + 1} features; the backbone gives {Features}", wrongWidth.Message);
        Assert.Contains("layers.1.bias", lacking.Message);
    }

    /// <summary>Input [N,3,H,W] → GlobalAveragePool → [N,3,1,1], the shape of ResNet18's cut.</summary>
    private static ModelProto Backbone(long opset)
    {
        var graph = new GraphProto { Name = "tiny" };
        graph.Input.Add(Value("data", TensorProto.Types.DataType.Float, "", "N", 3, Height, Width));
        graph.Node.Add(new NodeProto { OpType = "GlobalAveragePool", Input = { "data" }, Output = { "pool" }, Name = "gap" });
        graph.Output.Add(Value("pool", TensorProto.Types.DataType.Float, "", "N", 3, 1, 1));
        return new ModelProto { IrVersion = 7, Graph = graph, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } } };
    }

    private static ServedGraph Served() => new()
    {
        Fingerprint = "tiny:0123456789abcdef",
        Name = "tiny",
        InputName = "data",
        OutputName = "pool",
        InputShape = { 3, Height, Width },
        FeatureDimension = Features,
        Preprocessing = new Preprocessing
        {
            Description = "resize to 2x2, alpha over white, BGR, 0-255 x 0.0039",
            Bgr = true, Scale = 1f / 255f, Mean = { Mean }, Std = { Std }, MeanImage = { MeanImage },
        },
    };

    private static HeadParameters Head(HeadKind kind, int[] hidden, int seed)
    {
        var random = new Random(seed);
        float Next() => (float)(random.NextDouble() * 2 - 1);
        var labels = kind == HeadKind.Classifier ? new[] { "cat", "tiger", "lynx" } : [];
        var info = new HeadVersionInfo { Name = "tiny-head", Version = 2, Kind = kind, InputDimension = Features, BackboneFingerprint = "tiny:0123456789abcdef", Labels = { labels } };
        var export = new HeadExport
        {
            Info = info,
            HiddenSizes = { hidden },
            FeatureMean = { Enumerable.Range(0, Features).Select(_ => Next()) },
            FeatureStd = { Enumerable.Range(0, Features).Select(_ => 0.5f + Math.Abs(Next())) },
            TargetMean = 60.5,
            TargetStd = 12.25,
        };
        var tensors = new Dictionary<string, float[]>();
        var previous = Features;
        var sizes = hidden.Append(kind == HeadKind.Classifier ? labels.Length : 1).ToArray();
        for (var i = 0; i < sizes.Length; i++)
        {
            tensors[$"layers.{i}.weight"] = [.. Enumerable.Range(0, sizes[i] * previous).Select(_ => Next())];
            tensors[$"layers.{i}.bias"] = [.. Enumerable.Range(0, sizes[i]).Select(_ => Next())];
            previous = sizes[i];
        }
        return new HeadParameters(export, tensors);
    }

    /// <summary>The whole model written out: preprocessing as the backbone's Preprocessor does it, the average pool,
    /// the head as HeadService runs it.</summary>
    private static double[] Expected(HeadParameters head, ReadOnlySpan<byte> rgb, double featureScale = 1)
    {
        var plane = Height * Width;
        var features = new double[Features];
        for (var c = 0; c < 3; c++)
        {
            var source = 2 - c; // BGR
            for (var i = 0; i < plane; i++)
            {
                var v = rgb[i * 3 + source] * (1f / 255f) - MeanImage[c * plane + i];
                features[c] += (v - Mean[c]) * (1f / Std[c]) / plane;
            }
        }
        var h = head.Head;
        var x = features.Select((f, j) => (f * featureScale - h.FeatureMean[j]) / h.FeatureStd[j]).ToArray();
        var sizes = h.HiddenSizes.Append(h.Info.Kind == HeadKind.Classifier ? h.Info.Labels.Count : 1).ToArray();
        for (var i = 0; i < sizes.Length; i++)
        {
            var (w, b) = (head.Tensors[$"layers.{i}.weight"], head.Tensors[$"layers.{i}.bias"]);
            var y = new double[sizes[i]];
            for (var o = 0; o < y.Length; o++)
            {
                y[o] = b[o] + x.Select((v, j) => v * w[o * x.Length + j]).Sum();
                if (i < sizes.Length - 1) y[o] = Math.Max(0, y[o]);
            }
            x = y;
        }
        if (h.Info.Kind == HeadKind.Regressor) return [x[0] * h.TargetStd + h.TargetMean];
        var max = x.Max();
        var e = x.Select(v => Math.Exp(v - max)).ToArray();
        return [.. e.Select(v => v / e.Sum())];
    }

    /// <summary>Runs the model on two images given as RGB pixels; the tensor input gets them preprocessed here.</summary>
    private static float[][] Run(ModelProto model, ExportInput input, byte[] pixels)
    {
        using var session = new InferenceSession(model.ToByteArray());
        NamedOnnxValue feed;
        if (input == ExportInput.Pixels)
        {
            feed = NamedOnnxValue.CreateFromTensor(OnnxModelComposer.PixelsInput, new DenseTensor<byte>(pixels, [2, Height, Width, 3]));
        }
        else
        {
            var plane = Height * Width;
            var tensor = new DenseTensor<float>([2, 3, Height, Width]);
            for (var n = 0; n < 2; n++)
                for (var c = 0; c < 3; c++)
                    for (var i = 0; i < plane; i++)
                    {
                        var v = pixels[n * plane * 3 + i * 3 + (2 - c)] * (1f / 255f) - MeanImage[c * plane + i];
                        tensor[n, c, i / Width, i % Width] = (v - Mean[c]) * (1f / Std[c]);
                    }
            feed = NamedOnnxValue.CreateFromTensor(OnnxModelComposer.TensorInput, tensor);
        }
        using var results = session.Run([feed]);
        var output = results.First().AsTensor<float>();
        return output.Rank == 1
            ? [.. Enumerable.Range(0, 2).Select(n => new[] { output[n] })]
            : [.. Enumerable.Range(0, 2).Select(n => Enumerable.Range(0, output.Dimensions[1]).Select(k => output[n, k]).ToArray())];
    }
}

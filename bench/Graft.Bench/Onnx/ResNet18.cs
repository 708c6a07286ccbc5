using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;

namespace Graft.Bench.Onnx;

/// <summary>
/// The embedded ResNet18 (from the Microsoft.ML.DnnImageFeaturizer.ResNet18 package) run in-process by ONNX Runtime,
/// with its batch dimension made symbolic: the physical limit every Graft number is divided by.
/// </summary>
public sealed class ResNet18 : IDisposable
{
    public const string InputName = "Input247";
    public const string OutputName = "Pooling395_Output_0";
    public const int ImageSide = 224;
    public const int FeatureDimension = 512;
    private const int PlaneSize = ImageSide * ImageSide;

    private readonly InferenceSession _session;

    private ResNet18(InferenceSession session, float[] meanImage)
    {
        _session = session;
        MeanImage = meanImage;
    }

    /// <summary>The per-pixel BGR mean image (3×224×224) from ResNetPreprocess.onnx.</summary>
    public float[] MeanImage { get; }

    /// <summary>Directory holding ResNet18Onnx/ and ResNetPrepOnnx/ (copied to the output by the package).</summary>
    public static string ModelDirectory => Path.Combine(AppContext.BaseDirectory, "DnnImageModels");

    /// <summary>Opens the fp32 model (or <paramref name="modelBytes"/>, e.g. its int8 version); <paramref name="intraOpThreads"/>
    /// 0 leaves ONNX Runtime's own default (one thread per host core, spinning), which the sweep measures as a reference.</summary>
    public static ResNet18 Load(int intraOpThreads = 0, bool spinning = false, byte[]? modelBytes = null)
    {
        if (modelBytes is null)
        {
            var model = ModelProto.Parser.ParseFromFile(Path.Combine(ModelDirectory, "ResNet18Onnx", "ResNet18.onnx"));
            // Leading dim of every input, output and value_info becomes "N"; the graph has no Reshape that pins it.
            model.Graph.SetDim();
            modelBytes = model.ToByteArray();
        }
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads > 0)
        {
            options.IntraOpNumThreads = intraOpThreads;
            options.InterOpNumThreads = 1;
            options.AddSessionConfigEntry("session.intra_op.allow_spinning", spinning ? "1" : "0");
        }
        var session = new InferenceSession(modelBytes, options);

        var prep = ModelProto.Parser.ParseFromFile(Path.Combine(ModelDirectory, "ResNetPrepOnnx", "ResNetPreprocess.onnx"));
        var mean = prep.Graph.Initializer.Single(i => i.Name == "MeanImage");
        var meanImage = mean.FloatData.Count > 0
            ? mean.FloatData.ToArray()
            : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(mean.RawData.Span).ToArray();
        return new ResNet18(session, meanImage);
    }

    /// <summary>Runs one batch of preprocessed inputs (N×3×224×224) and returns N×512 features.</summary>
    public float[] Run(float[] input, int batch)
    {
        var tensor = new DenseTensor<float>(input, [batch, 3, ImageSide, ImageSide]);
        using var results = _session.Run([NamedOnnxValue.CreateFromTensor(InputName, tensor)]);
        return results.First().AsEnumerable<float>().ToArray();
    }

    /// <summary>
    /// The backbone's preprocessing for a 28×28 grey image: bilinear resize to 224×224, grey to B=G=R in 0–255,
    /// minus the mean image. Writes one image into <paramref name="destination"/> (3×224×224).
    /// </summary>
    public void Preprocess(ReadOnlySpan<byte> grey28, Span<float> destination)
    {
        const int side = Data.FashionMnist.Side;
        const float scale = (float)side / ImageSide;
        for (var y = 0; y < ImageSide; y++)
        {
            var sy = Math.Clamp((y + 0.5f) * scale - 0.5f, 0, side - 1);
            int y0 = (int)sy, y1 = Math.Min(y0 + 1, side - 1);
            var fy = sy - y0;
            for (var x = 0; x < ImageSide; x++)
            {
                var sx = Math.Clamp((x + 0.5f) * scale - 0.5f, 0, side - 1);
                int x0 = (int)sx, x1 = Math.Min(x0 + 1, side - 1);
                var fx = sx - x0;
                var top = grey28[y0 * side + x0] * (1 - fx) + grey28[y0 * side + x1] * fx;
                var bottom = grey28[y1 * side + x0] * (1 - fx) + grey28[y1 * side + x1] * fx;
                var value = top * (1 - fy) + bottom * fy;
                var p = y * ImageSide + x;
                for (var c = 0; c < 3; c++) destination[c * PlaneSize + p] = value - MeanImage[c * PlaneSize + p];
            }
        }
    }

    public void Dispose() => _session.Dispose();
}

using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Quantization;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using SessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;

namespace Graft.Backbone.Tests;

/// <summary>The real ResNet18 quantized once (on 8 calibration images, to keep the tests short) and shared.</summary>
public sealed class QuantizedResNet18 : IDisposable
{
    public QuantizedResNet18()
    {
        Profile = BackboneProfiles.Resolve(new BackboneOptions(), AppContext.BaseDirectory);
        Preprocessor = Preprocessor.Create(Profile, 40_000_000);
        Fp32 = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Profile.ModelPath));
        GraphCutter.Cut(Fp32, Profile.CutTensor);
        var calibration = QuantizedModelStore.CalibrationFiles(Path.Combine(AppContext.BaseDirectory, "calibration"), 8)
            .Select(f => Preprocessor.Preprocess(File.ReadAllBytes(f))).ToList();
        (Int8, Report) = Int8Quantizer.Quantize(Fp32, Profile.InputName!, [3, 224, 224], calibration, new QuantizationSettings());
        OptimizedPath = Path.Combine(Path.GetTempPath(), $"graft-int8-optimized-{Guid.NewGuid():N}.onnx");
        Int8Session = Open(Int8.ToByteArray(), OptimizedPath);
        Fp32Session = Open(Fp32.ToByteArray(), null);
    }

    public BackboneProfile Profile { get; }
    public Preprocessor Preprocessor { get; }
    public ModelProto Fp32 { get; }
    public ModelProto Int8 { get; }
    public QuantizationReport Report { get; }
    public string OptimizedPath { get; }
    public InferenceSession Int8Session { get; }
    public InferenceSession Fp32Session { get; }

    public float[] Run(InferenceSession session, float[] input)
    {
        using var value = OrtValue.CreateTensorValueFromMemory(input, [1, 3, 224, 224]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, [Profile.InputName!], [value], [Profile.CutTensor!]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private static InferenceSession Open(byte[] model, string? optimizedPath)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 2 };
        // ORT writes the graph it will really run: fused int8 kernels show up there by their op type.
        if (optimizedPath is not null) options.OptimizedModelFilePath = optimizedPath;
        return new InferenceSession(model, options);
    }

    public void Dispose()
    {
        Int8Session.Dispose();
        Fp32Session.Dispose();
        File.Delete(OptimizedPath);
    }
}

/// <summary>The <c>resnet18-int8</c> profile served in-process over one temporary quantized-model cache: a first start
/// quantizes (4 calibration images) and stores the model, then a second start loads it from the cache and stays up for
/// the tests.</summary>
public sealed class Int8BackboneService : IAsyncLifetime
{
    public string CacheDirectory { get; } = Directory.CreateTempSubdirectory("graft-int8-cache-").FullName;

    public BackboneInfo FirstStart { get; private set; } = null!;

    /// <summary>The first start logged "quantizing" (event 2102).</summary>
    public bool FirstStartQuantized { get; private set; }

    public BackboneFactory Restarted { get; private set; } = null!;

    public V1.Backbone.BackboneClient Client { get; private set; } = null!;

    public BackboneProfile Profile { get; private set; } = null!;

    public Preprocessor Preprocessor { get; private set; } = null!;

    private Dictionary<string, string?> Settings => new()
    {
        ["Graft:Backbone:Profile"] = BackboneProfiles.ResNet18Int8Name,
        ["Graft:Backbone:CalibrationImages"] = "4",
        ["Graft:Backbone:QuantizedCacheDirectory"] = CacheDirectory,
    };

    public async Task InitializeAsync()
    {
        await using (var first = new BackboneFactory(Settings))
        {
            FirstStart = await first.CreateBackboneClient().DescribeAsync(new DescribeBackboneRequest());
            FirstStartQuantized = first.Logs.Entries.Any(e => e.EventId.Id == 2102);
        }
        Restarted = new BackboneFactory(Settings);
        Client = Restarted.CreateBackboneClient();
        Profile = BackboneProfiles.Resolve(new BackboneOptions { Profile = BackboneProfiles.ResNet18Int8Name, CalibrationImages = 4 }, AppContext.BaseDirectory);
        Preprocessor = Preprocessor.Create(Profile, 40_000_000);
    }

    public async Task DisposeAsync()
    {
        if (Restarted is not null) await Restarted.DisposeAsync();
        Directory.Delete(CacheDirectory, recursive: true);
    }
}

public sealed class QuantizationTests(QuantizedResNet18 quantized, Int8BackboneService service, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<QuantizedResNet18>, IClassFixture<Int8BackboneService>
{
    [Fact]
    public void Weights_round_trip_within_half_a_step_of_their_output_channel_scale()
    {
        var conv = quantized.Fp32.Graph.Node.First(n => n.OpType == "Conv");
        var tensor = quantized.Fp32.Graph.Initializer.Single(t => t.Name == conv.Input[1]);
        var weights = tensor.FloatData.Count > 0 ? tensor.FloatData.ToArray() : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
        var channels = (int)tensor.Dims[0];

        var (values, scales) = Int8Quantizer.QuantizeWeights(weights, channels);

        var perChannel = weights.Length / channels;
        for (var m = 0; m < channels; m++)
        {
            var max = weights.AsSpan(m * perChannel, perChannel).ToArray().Max(Math.Abs);
            Assert.Equal(max / 127f, scales[m], 6);
            for (var k = 0; k < perChannel; k++)
            {
                var i = m * perChannel + k;
                Assert.InRange(values[i], (sbyte)-127, (sbyte)127);
                Assert.True(Math.Abs(values[i] * scales[m] - weights[i]) <= scales[m] / 2 * 1.0001f,
                    $"channel {m} weight {k}: {weights[i]} came back as {values[i] * scales[m]} (scale {scales[m]})");
            }
        }
    }

    [Fact]
    public void ONNX_Runtime_runs_the_quantized_resnet18_on_int8_kernels()
    {
        var optimized = ModelProto.Parser.ParseFrom(File.ReadAllBytes(quantized.OptimizedPath));
        var ops = optimized.Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());

        Assert.Equal(22, ops.GetValueOrDefault("QLinearConv"));
        Assert.Equal(9, ops.GetValueOrDefault("QLinearAdd"));
        Assert.DoesNotContain(ops.Keys, op => op is "Conv" or "FusedConv" or "Add" or "BatchNormalization");
        Assert.Equal((22, 22, 9, 19), (quantized.Report.FoldedBatchNorms, quantized.Report.QuantizedConvs, quantized.Report.QuantizedAdds, quantized.Report.FusedRelus));
    }

    [Fact]
    public void Int8_features_stay_close_to_fp32_on_real_photos_not_used_for_calibration()
    {
        var photos = Directory.GetFiles(Path.Combine(RepositoryLayout.Root, "samples", "photos", "held-out")).Order().ToList();
        Assert.True(photos.Count >= 6);

        var cosines = photos.Select(p =>
        {
            var input = quantized.Preprocessor.Preprocess(File.ReadAllBytes(p));
            return Cosine(quantized.Run(quantized.Int8Session, input), quantized.Run(quantized.Fp32Session, input));
        }).ToList();

        // The bench measures the full calibration (32 images); 8 here keep the test short and still land close.
        Assert.True(cosines.Average() >= 0.99, $"mean cosine {cosines.Average():F4}: {string.Join(", ", cosines.Select(c => c.ToString("F4")))}");
        Assert.True(cosines.Min() >= 0.98, $"worst cosine {cosines.Min():F4}: {string.Join(", ", cosines.Select(c => c.ToString("F4")))}");
    }

    [Fact]
    public async Task The_int8_profile_serves_under_its_own_fingerprint_and_reuses_its_cached_model_on_restart()
    {
        var second = await service.Client.DescribeAsync(new DescribeBackboneRequest());
        var image = ByteString.CopyFrom(File.ReadAllBytes(SampleImages.Load("test")[0].Path));
        var reply = await service.Client.ExtractAsync(new ExtractRequest { Image = image });

        Assert.StartsWith("resnet18-int8:", service.FirstStart.Fingerprint);
        Assert.True(service.FirstStartQuantized, "the first start did not quantize (no event 2102)");
        Assert.Equal(service.FirstStart.Fingerprint, second.Fingerprint);
        Assert.StartsWith("int8", second.Precision);
        Assert.Contains(service.Restarted.Logs.Entries, e => e.EventId.Id == 2103);
        Assert.Single(Directory.GetFiles(service.CacheDirectory, "*.onnx"));
        Assert.Equal(512, reply.Dimension);
    }

    [Fact]
    public async Task The_int8_profile_exports_the_qdq_graph_it_serves_and_plain_onnx_runtime_gets_its_features_from_it()
    {
        // Arrange
        var served = await service.Client.DescribeAsync(new DescribeBackboneRequest());
        var sample = SampleImages.Load("test")[0];
        var expected = await service.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(sample.ReadBytes()) });

        // Act: the graph as Gateway.ExportHead receives it.
        ServedGraph? graph = null;
        using var bytes = new MemoryStream();
        using (var call = service.Client.ExportGraph(new ExportGraphRequest()))
        {
            await foreach (var chunk in call.ResponseStream.ReadAllAsync())
            {
                graph ??= chunk.Graph;
                chunk.Data.WriteTo(bytes);
            }
        }
        var file = bytes.ToArray();
        var model = ModelProto.Parser.ParseFrom(file);

        // Assert: the QDQ graph (BatchNormalization folded), under the serving fingerprint, which covers these bytes...
        var ops = model.Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());
        Assert.True(ops.GetValueOrDefault("QuantizeLinear") > 0 && ops.GetValueOrDefault("DequantizeLinear") > 0,
            $"no QDQ nodes in the exported graph: {string.Join(", ", ops.Select(o => $"{o.Key} {o.Value}"))}");
        Assert.DoesNotContain("BatchNormalization", ops.Keys);
        Assert.True(model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version >= Int8Quantizer.MinimumOpset);
        Assert.Equal(served.Fingerprint, graph!.Fingerprint);
        Assert.Equal(graph.ModelSha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(file)));
        Assert.Equal(graph.Fingerprint, BackboneModel.ComputeFingerprint(service.Profile, file, graph.OutputName));

        // ...that a plain ONNX Runtime session runs to the service's own features.
        using var session = new InferenceSession(file);
        using var input = OrtValue.CreateTensorValueFromMemory(service.Preprocessor.Preprocess(sample.ReadBytes()), [1, .. graph.InputShape]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, [graph.InputName], [input], [graph.OutputName]);
        var actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        Assert.Equal(expected.Dimension, actual.Length);
        var worst = expected.Features.Select((e, i) => Math.Abs(e - actual[i]) / Math.Max(1.0, Math.Abs(e))).Max();
        output.WriteLine($"int8 served graph: {file.Length} bytes, {ops.GetValueOrDefault("QuantizeLinear")} QuantizeLinear, {ops.GetValueOrDefault("DequantizeLinear")} DequantizeLinear; largest feature difference {worst:G3}");
        Assert.True(worst <= 1e-4, $"the exported int8 graph differs from the service's features by up to {worst:G3} (relative, floor 1)");
    }

    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
        return dot / Math.Sqrt(na * nb);
    }
}

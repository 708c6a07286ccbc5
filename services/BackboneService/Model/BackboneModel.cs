using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using SessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;

namespace Graft.Backbone.Model;

/// <summary>The graph a session runs: its serialized ONNX model, the image input it is fed, the cut, the fingerprint.</summary>
public sealed record ServedModel(byte[] ModelBytes, string InputName, GraphCut Cut, string Fingerprint);

/// <summary>The one ONNX Runtime session of the process: the profile's model, cut before its classifier, with a
/// symbolic batch dimension, on the device the options ask for. <see cref="Run"/> is safe to call concurrently.</summary>
public sealed class BackboneModel : IDisposable
{
    /// <summary>Name ONNX Runtime gives its CPU provider.</summary>
    public const string CpuProvider = "CPUExecutionProvider";

    /// <summary>Name ONNX Runtime gives its CUDA provider.</summary>
    public const string CudaProvider = "CUDAExecutionProvider";

    private readonly InferenceSession _session;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly long[] _inputShape;
    private readonly int _inputLength;

    private BackboneModel(BackboneProfile profile, InferenceSession session, string inputName, GraphCut cut, string executionProvider, string fingerprint)
    {
        Profile = profile;
        _session = session;
        _inputNames = [inputName];
        _outputNames = [cut.CutTensor];
        _inputShape = [3, profile.InputHeight, profile.InputWidth];
        _inputLength = (int)(_inputShape[0] * _inputShape[1] * _inputShape[2]);
        Cut = cut;
        ExecutionProvider = executionProvider;
        Fingerprint = fingerprint;
        FeatureDimension = Run([new float[_inputLength]])[0].Length;
    }

    public BackboneProfile Profile { get; }

    /// <summary>Name of the graph input fed with the preprocessed image.</summary>
    public string InputName => _inputNames[0];

    /// <summary>What the load cut off, and where.</summary>
    public GraphCut Cut { get; }

    /// <summary>The provider the session really runs on.</summary>
    public string ExecutionProvider { get; }

    /// <summary>Identity of model bytes, preprocessing and cut point, e.g. <c>resnet18:0123456789abcdef</c>.</summary>
    public string Fingerprint { get; }

    /// <summary>Length of every feature vector (the cut tensor, flattened per input).</summary>
    public int FeatureDimension { get; }

    /// <summary>Input shape without the batch dimension.</summary>
    public IReadOnlyList<long> InputShape => _inputShape;

    /// <summary>Number of floats in one input.</summary>
    public int InputLength => _inputLength;

    /// <summary>Loads, cuts and opens the profile's model on the requested device ("auto", "cpu" or "cuda").</summary>
    /// <exception cref="InvalidOperationException">The model cannot be used, or "cuda" was required and is unavailable.</exception>
    public static BackboneModel Load(BackboneProfile profile, string device, int intraOpThreads, ILogger logger, bool allowSpinning = false)
    {
        Log.LoadingModel(logger, profile.Name, profile.ModelPath);
        if (!File.Exists(profile.ModelPath))
        {
            throw new InvalidOperationException(
                $"Backbone model file '{profile.ModelPath}' does not exist; set Graft:Backbone:ModelPath (or the profile's ModelPath) to the ONNX file.");
        }
        var served = BuildServedGraph(profile);
        Log.GraphCut(logger, served.Cut.CutTensor, served.Cut.RemovedNodes, served.Cut.RemovedParameters, served.Cut.KeptParameters);
        var (inputName, cut, fingerprint, cutBytes) = (served.InputName, served.Cut, served.Fingerprint, served.ModelBytes);

        var (options, provider) = CreateSessionOptions(device, intraOpThreads, allowSpinning, logger);
        using (options)
        {
            InferenceSession session;
            try
            {
                session = new InferenceSession(cutBytes, options);
            }
            catch (OnnxRuntimeException e)
            {
                throw new InvalidOperationException($"ONNX Runtime could not open the cut model '{profile.ModelPath}': {e.Message}", e);
            }
            try
            {
                return new BackboneModel(profile, session, inputName, cut, provider, fingerprint);
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }
    }

    /// <summary>The ONNX bytes this session runs, rebuilt from the model file by the same steps as at load (so an
    /// export never keeps a second copy of the weights in memory). Export relies on this being the served graph.</summary>
    /// <exception cref="InvalidOperationException">The model file changed since the service started (another fingerprint).</exception>
    public ServedModel ExportServedGraph()
    {
        var served = BuildServedGraph(Profile);
        if (served.Fingerprint != Fingerprint)
        {
            throw new InvalidOperationException(
                $"The model file '{Profile.ModelPath}' changed since the backbone started (fingerprint {served.Fingerprint}, serving {Fingerprint}); restart the backbone, then export.");
        }
        return served;
    }

    /// <summary>Every step from the model file to the graph handed to ONNX Runtime: read, cut before the classifier,
    /// symbolic batch. Load and export both go through here, so what is exported is what runs.</summary>
    private static ServedModel BuildServedGraph(BackboneProfile profile)
    {
        var bytes = File.ReadAllBytes(profile.ModelPath);
        var model = ModelProto.Parser.ParseFrom(bytes);
        var inputName = ResolveInputName(model.Graph, profile);
        var cut = GraphCutter.Cut(model, profile.CutTensor);
        var fingerprint = ComputeFingerprint(profile, bytes, cut.CutTensor);
        // The classifier's weights go no further than this managed copy: ONNX Runtime only sees the cut graph.
        return new ServedModel(model.ToByteArray(), inputName, cut, fingerprint);
    }

    /// <summary>Runs one batch; each input is [3, H, W] flattened. Returns one flattened feature vector per input.</summary>
    public float[][] Run(IReadOnlyList<float[]> inputs)
    {
        var batch = inputs.Count;
        var data = new float[batch * _inputLength];
        for (var i = 0; i < batch; i++)
        {
            inputs[i].AsSpan().CopyTo(data.AsSpan(i * _inputLength, _inputLength));
        }
        using var input = OrtValue.CreateTensorValueFromMemory(data, [batch, .. _inputShape]);
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, _inputNames, [input], _outputNames);
        var output = outputs[0].GetTensorDataAsSpan<float>();
        var perInput = output.Length / batch;
        var features = new float[batch][];
        for (var i = 0; i < batch; i++)
        {
            features[i] = output.Slice(i * perInput, perInput).ToArray();
        }
        return features;
    }

    /// <summary>Runs a warm-up batch of one and returns how long it took.</summary>
    public TimeSpan WarmUp()
    {
        var started = Stopwatch.GetTimestamp();
        Run([new float[_inputLength]]);
        return Stopwatch.GetElapsedTime(started);
    }

    public void Dispose() => _session.Dispose();

    /// <summary>"&lt;name&gt;:" + the first 16 hex digits of SHA-256 over model bytes, preprocessing and cut tensor.</summary>
    public static string ComputeFingerprint(BackboneProfile profile, byte[] modelBytes, string cutTensor)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(modelBytes);
        sha.AppendData(Encoding.UTF8.GetBytes($"\n{profile.DescribePreprocessing()}\n{cutTensor}"));
        if (profile.MeanImagePath is { } meanPath && File.Exists(meanPath))
        {
            sha.AppendData(File.ReadAllBytes(meanPath));
        }
        return $"{profile.Name}:{Convert.ToHexStringLower(sha.GetHashAndReset())[..16]}";
    }

    private static string ResolveInputName(GraphProto graph, BackboneProfile profile)
    {
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet();
        var inputs = graph.Input.Where(i => !initializers.Contains(i.Name)).Select(i => i.Name).ToList();
        if (profile.InputName is { Length: > 0 } named)
        {
            return inputs.Contains(named)
                ? named
                : throw new InvalidOperationException($"Profile '{profile.Name}' names input '{named}', but the model's inputs are {string.Join(", ", inputs)}.");
        }
        return inputs.Count == 1
            ? inputs[0]
            : throw new InvalidOperationException($"The model has inputs {string.Join(", ", inputs)}; name the image input in the profile's InputName.");
    }

    private static (SessionOptions Options, string Provider) CreateSessionOptions(string device, int intraOpThreads, bool allowSpinning, ILogger logger)
    {
        SessionOptions NewOptions()
        {
            var o = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
            if (intraOpThreads > 0) o.IntraOpNumThreads = intraOpThreads;
            // ORT's intra-op threads spin after each run by default; in a server that steals the cores that decode
            // and preprocess the next batch and answer gRPC. Measured in bench/BackboneThroughput.
            if (!allowSpinning) o.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
            return o;
        }

        var options = NewOptions();
        if (device == "cpu") return (options, CpuProvider);
        try
        {
            options.AppendExecutionProvider_CUDA(0);
            return (options, CudaProvider);
        }
        catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
        {
            // A failed append may leave the options half-configured; start CPU from clean options.
            options.Dispose();
            if (device == "cuda")
            {
                throw new InvalidOperationException(
                    $"Graft:Backbone:Device is 'cuda' but the CUDA execution provider cannot be loaded ({e.Message.Trim()}). " +
                    "Install the CUDA runtime, cuBLAS and cuDNN that ONNX Runtime 1.31 needs and expose a GPU, or set Graft:Backbone:Device to 'auto' or 'cpu'.", e);
            }
            Log.CudaFallback(logger, e.Message.Trim());
            return (NewOptions(), CpuProvider);
        }
    }
}

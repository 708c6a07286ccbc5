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
/// symbolic batch dimension, on the device the options ask for. <c>Run</c> is safe to call concurrently.</summary>
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

    private BackboneModel(BackboneProfile profile, InferenceSession session, string inputName, GraphCut cut, IReadOnlyList<CutPoint> cutPoints,
        ModelProto cutModel, string executionProvider, string fingerprint)
    {
        Profile = profile;
        _session = session;
        _inputNames = [inputName];
        // Output 0 is the final cut; then one per distinct earlier cut tensor. One run can return any subset.
        _outputNames = [cut.CutTensor, .. cutPoints.Select(c => c.Tensor).Where(t => t != cut.CutTensor).Distinct()];
        _inputShape = [3, profile.InputHeight, profile.InputWidth];
        _inputLength = (int)(_inputShape[0] * _inputShape[1] * _inputShape[2]);
        Cut = cut;
        ExecutionProvider = executionProvider;
        Fingerprint = fingerprint;
        var shapes = ProbeShapes();
        FeatureDimension = (int)shapes[0].Aggregate(1L, (a, d) => a * d);
        CutPoints = cutPoints.Select(c =>
        {
            var output = Array.IndexOf(_outputNames, c.Tensor);
            var tail = CutPointFinder.TailModel(cutModel, c.Tensor, cut.CutTensor, shapes[output]);
            var parameters = tail.Graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d));
            return new CutPointOutput(c.Name, c.Tensor, output, shapes[output], parameters, tail.ToByteArray());
        }).ToList();
    }

    /// <summary>The earlier cut points this backbone offers, each with its output index, shape and tail.</summary>
    public IReadOnlyList<CutPointOutput> CutPoints { get; }

    /// <summary>The cut point called <paramref name="name"/>, or null.</summary>
    public CutPointOutput? FindCutPoint(string name) => CutPoints.FirstOrDefault(c => c.Name == name);

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
        var (model, inputName, cut, fingerprint) = CutModel(profile);
        Log.GraphCut(logger, cut.CutTensor, cut.RemovedNodes, cut.RemovedParameters, cut.KeptParameters);
        var cutPoints = CutPointFinder.Find(model.Graph, cut.CutTensor, profile.CutPoints);
        // The session also returns the earlier cut points (extra outputs of the same run); an export needs only the
        // final cut, so ExportServedGraph serializes the graph before this step.
        GraphCutter.ExposeOutputs(model, cutPoints.Select(c => c.Tensor));
        // The classifier's weights go no further than this managed copy: ONNX Runtime only sees the cut graph.
        var cutBytes = model.ToByteArray();

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
                return new BackboneModel(profile, session, inputName, cut, cutPoints, model, provider, fingerprint);
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
        var (model, inputName, cut, fingerprint) = CutModel(Profile);
        if (fingerprint != Fingerprint)
        {
            throw new InvalidOperationException(
                $"The model file '{Profile.ModelPath}' changed since the backbone started (fingerprint {fingerprint}, serving {Fingerprint}); restart the backbone, then export.");
        }
        return new ServedModel(model.ToByteArray(), inputName, cut, fingerprint);
    }

    /// <summary>Every step from the model file to the graph handed to ONNX Runtime: read, cut before the classifier,
    /// symbolic batch. Load and export both go through here, so what is exported is what runs.</summary>
    private static (ModelProto Model, string InputName, GraphCut Cut, string Fingerprint) CutModel(BackboneProfile profile)
    {
        var bytes = File.ReadAllBytes(profile.ModelPath);
        var model = ModelProto.Parser.ParseFrom(bytes);
        var inputName = ResolveInputName(model.Graph, profile);
        var cut = GraphCutter.Cut(model, profile.CutTensor);
        return (model, inputName, cut, ComputeFingerprint(profile, bytes, cut.CutTensor));
    }

    /// <summary>Runs one batch; each input is [3, H, W] flattened. Returns one flattened feature vector per input.</summary>
    public float[][] Run(IReadOnlyList<float[]> inputs) => Run(inputs, FinalOnly).Select(perInput => perInput[0]).ToArray();

    /// <summary>Output indexes for the final features alone.</summary>
    public static IReadOnlyList<int> FinalOnly { get; } = [0];

    /// <summary>Runs one batch once and reads the requested outputs (0 = final features, else a
    /// <see cref="CutPointOutput.Output"/>): result[input][k] is output <paramref name="outputs"/>[k] of that input, flattened.</summary>
    public float[][][] Run(IReadOnlyList<float[]> inputs, IReadOnlyList<int> outputs)
    {
        var batch = inputs.Count;
        var data = new float[batch * _inputLength];
        for (var i = 0; i < batch; i++)
        {
            inputs[i].AsSpan().CopyTo(data.AsSpan(i * _inputLength, _inputLength));
        }
        using var input = OrtValue.CreateTensorValueFromMemory(data, [batch, .. _inputShape]);
        using var runOptions = new RunOptions();
        using var values = _session.Run(runOptions, _inputNames, [input], outputs.Select(o => _outputNames[o]).ToArray());
        var result = new float[batch][][];
        for (var i = 0; i < batch; i++) result[i] = new float[outputs.Count][];
        for (var k = 0; k < outputs.Count; k++)
        {
            var output = values[k].GetTensorDataAsSpan<float>();
            var perInput = output.Length / batch;
            for (var i = 0; i < batch; i++)
            {
                result[i][k] = output.Slice(i * perInput, perInput).ToArray();
            }
        }
        return result;
    }

    /// <summary>Shapes (without the batch dimension) of every output, from one run of a zero input.</summary>
    private long[][] ProbeShapes()
    {
        using var input = OrtValue.CreateTensorValueFromMemory(new float[_inputLength], [1, .. _inputShape]);
        using var runOptions = new RunOptions();
        using var values = _session.Run(runOptions, _inputNames, [input], _outputNames);
        return values.Select(v => v.GetTensorTypeAndShape().Shape[1..]).ToArray();
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

/// <summary>An earlier cut point as this model serves it.</summary>
/// <param name="Name">Name callers ask for, e.g. <c>last-block</c>.</param>
/// <param name="Tensor">Graph tensor read at the cut.</param>
/// <param name="Output">Index among the session's outputs (0 is the final features).</param>
/// <param name="Shape">Shape without the batch dimension, e.g. [512, 7, 7].</param>
/// <param name="TailParameters">Weights (element count) of the tail between this cut and the final features.</param>
/// <param name="TailOnnx">The tail as a standalone ONNX model (input: this cut, output: the final features).</param>
public sealed record CutPointOutput(string Name, string Tensor, int Output, long[] Shape, long TailParameters, byte[] TailOnnx)
{
    /// <summary>Values per input at this cut.</summary>
    public long Dimension => Shape.Aggregate(1L, (a, d) => a * d);
}

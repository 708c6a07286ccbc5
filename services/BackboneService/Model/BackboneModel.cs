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

/// <summary>The profile's model, cut before its classifier, with a symbolic batch dimension, opened on the device the
/// options ask for as one or more ONNX Runtime sessions (the <see cref="ExecutionLayout"/>). <c>Run</c> is safe
/// to call concurrently: each call takes a free session (waiting for one if all are busy).</summary>
public sealed class BackboneModel : IDisposable
{
    /// <summary>Name ONNX Runtime gives its CPU provider.</summary>
    public const string CpuProvider = "CPUExecutionProvider";

    /// <summary>Name ONNX Runtime gives its CUDA provider.</summary>
    public const string CudaProvider = "CUDAExecutionProvider";

    private readonly SessionPool _sessions;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly long[] _inputShape;
    private readonly int _inputLength;
    private readonly Func<ModelProto, string, (ModelProto Model, string Precision)>? _quantize;

    private BackboneModel(BackboneProfile profile, SessionPool sessions, string inputName, GraphCut cut, IReadOnlyList<CutPoint> cutPoints,
        ModelProto cutModel, string executionProvider, string fingerprint, ExecutionLayout layout,
        Func<ModelProto, string, (ModelProto Model, string Precision)>? quantize)
    {
        Profile = profile;
        _sessions = sessions;
        _quantize = quantize;
        Layout = layout;
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

    /// <summary>"fp32", or the quantization that produced the graph (e.g. "int8 (static QDQ ...)").</summary>
    public string Precision { get; private init; } = "fp32";

    /// <summary>Sessions, threads per session and spinning in effect.</summary>
    public ExecutionLayout Layout { get; }

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
    /// <remarks>For a profile with <see cref="BackboneProfile.Quantization"/>, <c>quantize</c> turns the cut fp32 model
    /// into the model to run, with a line describing its precision (see <see cref="Quantization.QuantizedModelStore"/>).</remarks>
    public static BackboneModel Load(BackboneProfile profile, string device, ExecutionLayout layout, ILogger logger,
        Func<ModelProto, string, (ModelProto Model, string Precision)>? quantize = null)
    {
        Log.LoadingModel(logger, profile.Name, profile.ModelPath);
        if (!File.Exists(profile.ModelPath))
        {
            throw new InvalidOperationException(
                $"Backbone model file '{profile.ModelPath}' does not exist; set Graft:Backbone:ModelPath (or the profile's ModelPath) to the ONNX file.");
        }
        var (model, inputName, cut, fingerprint, precision) = CutModel(profile, quantize);
        Log.GraphCut(logger, cut.CutTensor, cut.RemovedNodes, cut.RemovedParameters, cut.KeptParameters);
        // Cut points are found on fp32 graphs only: quantization rewrites the tensors between them, and a fine-tuned
        // tail starts from the fp32 weights anyway.
        var cutPoints = precision == "fp32" ? CutPointFinder.Find(model.Graph, cut.CutTensor, profile.CutPoints) : [];
        // The session also returns the earlier cut points (extra outputs of the same run); an export needs only the
        // final cut, so ExportServedGraph serializes the graph without this step.
        GraphCutter.ExposeOutputs(model, cutPoints.Select(c => c.Tensor));
        // The classifier's weights go no further than this managed copy: ONNX Runtime only sees the cut graph.
        var cutBytes = model.ToByteArray();

        var (options, provider) = CreateSessionOptions(device, layout, logger);
        // On a GPU the device, not the cores, runs the model: parallel sessions would only hold more copies of it.
        if (provider == CudaProvider && layout.AutoSessions) layout = layout with { Sessions = 1 };
        Log.Layout(logger, layout.ToString(), layout.AutoSessions ? "sessions chosen from the cores the process may use" : "sessions as configured");
        using (options)
        {
            var sessions = new SessionPool();
            try
            {
                for (var i = 0; i < layout.Sessions; i++)
                {
                    try
                    {
                        sessions.Add(new InferenceSession(cutBytes, options, sessions.PrePackedWeights));
                    }
                    catch (OnnxRuntimeException e)
                    {
                        throw new InvalidOperationException($"ONNX Runtime could not open the cut model '{profile.ModelPath}': {e.Message}", e);
                    }
                }
                return new BackboneModel(profile, sessions, inputName, cut, cutPoints, model, provider, fingerprint, layout, quantize) { Precision = precision };
            }
            catch
            {
                sessions.Dispose();
                throw;
            }
        }
    }

    /// <summary>The ONNX bytes this model runs (without the extra cut-point outputs), rebuilt from the model file by the
    /// same steps as at load, so an export never keeps a second copy of the weights in memory. For an int8 profile the
    /// quantized graph comes from its on-disk cache.</summary>
    /// <exception cref="InvalidOperationException">The model file changed since the service started (another fingerprint).</exception>
    public ServedModel ExportServedGraph()
    {
        var (model, inputName, cut, fingerprint, _) = CutModel(Profile, _quantize);
        if (fingerprint != Fingerprint)
        {
            throw new InvalidOperationException(
                $"The model file '{Profile.ModelPath}' changed since the backbone started (fingerprint {fingerprint}, serving {Fingerprint}); restart the backbone, then export.");
        }
        return new ServedModel(model.ToByteArray(), inputName, cut, fingerprint);
    }

    /// <summary>Every step from the model file to the graph handed to ONNX Runtime: read, cut before the classifier,
    /// symbolic batch, quantize (int8 profiles). Load and export both go through here, so what is exported is what runs.</summary>
    private static (ModelProto Model, string InputName, GraphCut Cut, string Fingerprint, string Precision) CutModel(
        BackboneProfile profile, Func<ModelProto, string, (ModelProto Model, string Precision)>? quantize)
    {
        var bytes = File.ReadAllBytes(profile.ModelPath);
        var model = ModelProto.Parser.ParseFrom(bytes);
        var inputName = ResolveInputName(model.Graph, profile);
        var cut = GraphCutter.Cut(model, profile.CutTensor);
        var precision = "fp32";
        if (profile.Quantization is not null && quantize is not null) (model, precision) = quantize(model, inputName);
        // A quantized model is its own backbone: its fingerprint covers the int8 graph, not the fp32 file.
        var fingerprint = ComputeFingerprint(profile, precision == "fp32" ? bytes : model.ToByteArray(), cut.CutTensor);
        return (model, inputName, cut, fingerprint, precision);
    }

    /// <summary>Runs one batch; each input is [3, H, W] flattened. Returns one flattened feature vector per input.</summary>
    public float[][] Run(IReadOnlyList<float[]> inputs) => Run(inputs, FinalOnly).Select(perInput => perInput[0]).ToArray();

    /// <summary>Output indexes for the final features alone.</summary>
    public static IReadOnlyList<int> FinalOnly { get; } = [0];

    /// <summary>Runs one batch once, on a free session, and reads the requested outputs (0 = final features, else a
    /// <see cref="CutPointOutput.Output"/>): result[input][k] is output <paramref name="outputs"/>[k] of that input, flattened.</summary>
    public float[][][] Run(IReadOnlyList<float[]> inputs, IReadOnlyList<int> outputs)
    {
        var lane = _sessions.Take();
        try
        {
            return RunOn(lane, inputs, outputs);
        }
        finally
        {
            _sessions.Return(lane);
        }
    }

    private float[][][] RunOn(SessionLane lane, IReadOnlyList<float[]> inputs, IReadOnlyList<int> outputs)
    {
        var batch = inputs.Count;
        // The session's own input buffer, pinned once and reused: no 600 KB-per-image array on the large object heap per run.
        var data = lane.InputBuffer(batch * _inputLength);
        for (var i = 0; i < batch; i++)
        {
            inputs[i].AsSpan().CopyTo(data.Span.Slice(i * _inputLength, _inputLength));
        }
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, data, [batch, .. _inputShape]);
        using var values = lane.Session.Run(lane.RunOptions, _inputNames, [input], outputs.Select(o => _outputNames[o]).ToArray());
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
        var lane = _sessions.Take();
        try
        {
            using var input = OrtValue.CreateTensorValueFromMemory(new float[_inputLength], [1, .. _inputShape]);
            using var values = lane.Session.Run(lane.RunOptions, _inputNames, [input], _outputNames);
            return values.Select(v => v.GetTensorTypeAndShape().Shape[1..]).ToArray();
        }
        finally
        {
            _sessions.Return(lane);
        }
    }

    /// <summary>Runs a warm-up batch of one on every session (each plans its first run) and returns how long it took.</summary>
    public TimeSpan WarmUp()
    {
        var started = Stopwatch.GetTimestamp();
        Parallel.For(0, Layout.Sessions, new ParallelOptions { MaxDegreeOfParallelism = Layout.Sessions }, _ => Run([new float[_inputLength]]));
        return Stopwatch.GetElapsedTime(started);
    }

    public void Dispose() => _sessions.Dispose();

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

    private static (SessionOptions Options, string Provider) CreateSessionOptions(string device, ExecutionLayout layout, ILogger logger)
    {
        SessionOptions NewOptions()
        {
            var o = new SessionOptions
            {
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
                // Always explicit: ORT's default counts the host's cores, not the ones a container or affinity mask allows.
                IntraOpNumThreads = layout.IntraOpThreads,
                InterOpNumThreads = 1,
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            };
            // ORT's intra-op threads spin after each run by default; in a server that steals the cores that decode
            // and preprocess the next batch and answer gRPC. Measured in bench/BackboneThroughput.
            o.AddSessionConfigEntry("session.intra_op.allow_spinning", layout.AllowSpinning ? "1" : "0");
            o.AddSessionConfigEntry("session.inter_op.allow_spinning", "0");
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

    /// <summary>One session with what its runs reuse.</summary>
    private sealed class SessionLane(InferenceSession session) : IDisposable
    {
        private float[] _input = [];

        public InferenceSession Session { get; } = session;

        public RunOptions RunOptions { get; } = new();

        /// <summary>A pinned buffer of at least <paramref name="length"/> floats, grown (never shrunk) as batches need.</summary>
        public Memory<float> InputBuffer(int length)
        {
            if (_input.Length < length) _input = GC.AllocateUninitializedArray<float>(length, pinned: true);
            return _input.AsMemory(0, length);
        }

        public void Dispose()
        {
            RunOptions.Dispose();
            Session.Dispose();
        }
    }

    /// <summary>The sessions of the layout; a run takes a free one. Sessions share ORT's pre-packed weights.</summary>
    private sealed class SessionPool : IDisposable
    {
        private readonly List<SessionLane> _all = [];
        private readonly System.Collections.Concurrent.ConcurrentBag<SessionLane> _free = [];
        private readonly SemaphoreSlim _available = new(0);

        public PrePackedWeightsContainer PrePackedWeights { get; } = new();

        public void Add(InferenceSession session)
        {
            var lane = new SessionLane(session);
            _all.Add(lane);
            _free.Add(lane);
            _available.Release();
        }

        public SessionLane Take()
        {
            _available.Wait();
            return _free.TryTake(out var lane) ? lane : throw new InvalidOperationException("Session pool out of step.");
        }

        public void Return(SessionLane lane)
        {
            _free.Add(lane);
            _available.Release();
        }

        public void Dispose()
        {
            foreach (var lane in _all) lane.Dispose();
            PrePackedWeights.Dispose();
            _available.Dispose();
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

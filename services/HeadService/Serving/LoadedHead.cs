using Graft.Heads.Model;
using Graft.Heads.Registry;
using Graft.Heads.Tails;
using Graft.V1;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Graft.Heads.Serving;

/// <summary>One head version in memory, ready to run. Owned by <see cref="HeadCache"/>, which disposes it on eviction;
/// a run that races an eviction gets false and reloads.</summary>
public sealed class LoadedHead : IDisposable
{
    private readonly HeadNetwork _network;
    // Fine-tuned versions: the retrained tail and the standardisation of its output.
    private readonly OnnxTail? _tail;
    private readonly Tensor? _tailMean;
    private readonly Tensor? _tailStd;
    private readonly Device _device;
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <exception cref="InvalidDataException">The weights do not fit the manifest, or the tail does not convert.</exception>
    public LoadedHead(HeadManifest manifest, IReadOnlyList<NamedTensor> weights, Device device, byte[]? tailOnnx = null)
    {
        Manifest = manifest;
        _device = device;
        var outputs = manifest.Kind == HeadKind.Regressor ? 1 : manifest.Labels.Count;
        _network = new HeadNetwork(manifest.InputDimension, manifest.HiddenSizes, outputs, manifest.Dropout);
        try
        {
            var byName = weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
            using var noGrad = no_grad();
            foreach (var (name, parameter) in _network.named_parameters())
            {
                if (!byName.TryGetValue(name, out var stored) || !stored.Shape.SequenceEqual(parameter.shape))
                {
                    throw new InvalidDataException($"weights file lacks tensor '{name}' of shape [{string.Join(',', parameter.shape)}] that head.json's architecture needs.");
                }
                using var source = tensor(stored.Data, stored.Shape);
                parameter.copy_(source);
            }
            if (byName.Count != _network.named_parameters().Count())
            {
                throw new InvalidDataException("weights file holds tensors head.json's architecture does not have.");
            }
            _network.to(device);
            _network.eval();
            if (manifest.FineTuned)
            {
                try
                {
                    _tail = OnnxTail.FromOnnx(tailOnnx ?? throw new InvalidDataException("tail file was not loaded."));
                }
                catch (TailConversionException e)
                {
                    throw new InvalidDataException($"tail file does not convert: {e.Message}", e);
                }
                if (!_tail.InputShape.SequenceEqual(manifest.CutShape))
                {
                    throw new InvalidDataException(
                        $"tail file takes [{string.Join(", ", _tail.InputShape)}] but head.json says cut shape [{string.Join(", ", manifest.CutShape)}].");
                }
                _tail.to(device);
                _tail.eval();
                _tailMean = tensor(manifest.FeatureMean).to(device);
                _tailStd = tensor(manifest.FeatureStd).to(device);
            }
        }
        catch
        {
            _network.Dispose();
            _tail?.Dispose();
            _tailMean?.Dispose();
            _tailStd?.Dispose();
            throw;
        }
        SizeBytes = (manifest.ParameterCount + manifest.TailParameterCount) * sizeof(float) + manifest.InputDimension * 2L * sizeof(float);
    }

    public HeadManifest Manifest { get; }

    /// <summary>Approximate memory held: parameters plus normalisation vectors.</summary>
    public long SizeBytes { get; }

    /// <summary>Runs the head on one feature vector (a fine-tuned version: on the activations at its cut point,
    /// <paramref name="cutValues"/>). False when the head was disposed meanwhile.</summary>
    public bool TryRun(ReadOnlySpan<float> features, ReadOnlySpan<float> cutValues, int topK, out HeadOutput output)
    {
        var m = Manifest;
        float[] input;
        if (m.FineTuned)
        {
            input = cutValues.ToArray();
        }
        else
        {
            input = new float[features.Length];
            for (var j = 0; j < input.Length; j++)
            {
                input[j] = (features[j] - m.FeatureMean[j]) / m.FeatureStd[j];
            }
        }
        output = new HeadOutput { Head = m.Name, Version = m.Version, Kind = m.Kind };
        float[] values;
        lock (_gate)
        {
            if (_disposed)
            {
                return false;
            }
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var x = _tail is null
                ? tensor(input, [1, input.Length]).to(_device)
                : _tail.call(tensor(input, [1, .. m.CutShape]).to(_device)).sub(_tailMean!).div(_tailStd!);
            var y = _network.call(x);
            if (output.Kind == HeadKind.Classifier)
            {
                y = nn.functional.softmax(y, 1);
            }
            values = y.cpu().data<float>().ToArray();
        }
        if (output.Kind == HeadKind.Regressor)
        {
            output.Value = values[0] * m.TargetStd + m.TargetMean;
        }
        else
        {
            foreach (var i in Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take(topK))
            {
                output.Top.Add(new LabelScore { Label = m.Labels[i], Probability = values[i] });
            }
        }
        return true;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _network.Dispose();
            _tail?.Dispose();
            _tailMean?.Dispose();
            _tailStd?.Dispose();
        }
    }
}

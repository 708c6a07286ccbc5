using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Graft.Heads.Model;

/// <summary>
/// A head: Linear(F,h1) → ReLU [→ Dropout] → … → Linear(h_last, outputs). No hidden sizes gives a linear probe.
/// Dropout draws from a generator owned by the training job, so concurrent jobs stay deterministic.
/// </summary>
public sealed class HeadNetwork : nn.Module<Tensor, Tensor>
{
    // The field name becomes the parameter prefix in the weights file ("layers.0.weight", ...).
    private readonly ModuleList<Linear> layers;
    private readonly double _dropout;
    private Generator? _dropoutGenerator;

    public HeadNetwork(int inputDimension, IReadOnlyList<int> hiddenSizes, int outputs, double dropout) : base("head")
    {
        var linear = new List<Linear>();
        var previous = inputDimension;
        foreach (var size in hiddenSizes)
        {
            linear.Add(nn.Linear(previous, size));
            previous = size;
        }
        linear.Add(nn.Linear(previous, outputs));
        layers = nn.ModuleList(linear.ToArray());
        _dropout = dropout;
        RegisterComponents();
    }

    /// <summary>Number of trainable values.</summary>
    public static long ParameterCount(int inputDimension, IReadOnlyList<int> hiddenSizes, int outputs)
    {
        long count = 0;
        var previous = (long)inputDimension;
        foreach (var size in hiddenSizes.Append(outputs))
        {
            count += previous * size + size;
            previous = size;
        }
        return count;
    }

    /// <summary>Sets the generator dropout masks are drawn from while training.</summary>
    public void UseDropoutGenerator(Generator generator) => _dropoutGenerator = generator;

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input;
        for (var i = 0; i < layers.Count - 1; i++)
        {
            x = nn.functional.relu(layers[i].call(x));
            if (training && _dropout > 0)
            {
                // Scalars held by `using`: a temporary one can be finalized during the native call (see ScalarSafeAdam).
                using var dropProbability = _dropout.ToScalar();
                using var keepProbability = (1 - _dropout).ToScalar();
                var keep = rand(x.shape, dtype: x.dtype, device: x.device, generator: _dropoutGenerator).ge_(dropProbability);
                x = x.mul(keep).div_(keepProbability);
            }
        }
        return layers[layers.Count - 1].call(x).MoveToOuterDisposeScope();
    }
}

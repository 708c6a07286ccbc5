using TorchSharp;
using Graft.Heads.Model;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Graft.Heads.Training;

/// <summary>
/// Adam with L2 weight decay, the same arithmetic in the same order as TorchSharp's <c>optim.Adam</c> (so the same
/// seed trains the same weights), but with every <see cref="Scalar"/> it hands to libtorch held until the call returns.
/// </summary>
/// <remarks>
/// Why not <c>optim.Adam</c>: TorchSharp 0.107 turns doubles into temporary <see cref="Scalar"/>s (native objects with
/// a finalizer) and passes only their handles to libtorch. Once the handle is read the managed object is unreachable,
/// so a garbage collection during the native call (another thread allocating is enough: a gRPC server always is) lets
/// the finalizer free the scalar while libtorch reads it. Seen as a training that died with "Expected false to be true"
/// from <c>c10::Scalar::toFloat</c> inside <c>Adam.step</c> (dotnet/TorchSharp#1434 and #1496 are the unmerged fixes).
/// </remarks>
public sealed class ScalarSafeAdam : IDisposable
{
    private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
    private readonly (Parameter Parameter, Tensor Mean, Tensor Variance)[] _state;
    private readonly double _learningRate;
    private readonly double _weightDecay;
    private long _step;

    public ScalarSafeAdam(IEnumerable<Parameter> parameters, double learningRate, double weightDecay)
    {
        _learningRate = learningRate;
        _weightDecay = weightDecay;
        using var noGrad = no_grad();
        _state = parameters.Select(p => (p, zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope())).ToArray();
    }

    public void zero_grad()
    {
        foreach (var (parameter, _, _) in _state)
        {
            using var grad = parameter.grad;
            grad?.zero_();
        }
    }

    public void step()
    {
        _step++;
        var biasCorrection1 = 1 - Math.Pow(Beta1, _step);
        var biasCorrection2 = 1 - Math.Pow(Beta2, _step);
        // `using` keeps each scalar reachable (and so unfinalized) until every native call that reads it has returned.
        using var beta1 = Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - Beta1).ToScalar();
        using var beta2 = Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - Beta2).ToScalar();
        using var weightDecay = _weightDecay.ToScalar();
        using var sqrtBiasCorrection2 = Math.Sqrt(biasCorrection2).ToScalar();
        using var epsilon = Epsilon.ToScalar();
        using var negativeStepSize = (-(_learningRate / biasCorrection1)).ToScalar();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var (parameter, mean, variance) in _state)
        {
            var grad = parameter.grad;
            if (grad is null)
            {
                continue;
            }
            if (_weightDecay != 0)
            {
                grad = grad.add(parameter, weightDecay);
            }
            mean.mul_(beta1).add_(grad, oneMinusBeta1);
            variance.mul_(beta2).addcmul_(grad, grad.conj(), oneMinusBeta2);
            var denominator = variance.sqrt().div(sqrtBiasCorrection2).add_(epsilon, TorchScalars.One); // add_(epsilon) alone would make a temporary alpha
            parameter.addcdiv_(mean, denominator, negativeStepSize);
        }
    }

    public void Dispose()
    {
        foreach (var (_, mean, variance) in _state)
        {
            mean.Dispose();
            variance.Dispose();
        }
    }
}

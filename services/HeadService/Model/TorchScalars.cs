using TorchSharp;

namespace Graft.Heads.Model;

/// <summary>Scalars held for the life of the process. TorchSharp's <c>a.add(b)</c> passes libtorch a temporary alpha
/// of 1 that a garbage collection can finalize while the native call still reads it (see
/// <see cref="Training.ScalarSafeAdam"/>); <c>a.add(b, TorchScalars.One)</c> cannot.</summary>
public static class TorchScalars
{
    public static readonly Scalar One = 1.0.ToScalar();
}

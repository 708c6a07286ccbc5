using TorchSharp;

namespace Graft.Heads.Model;

/// <summary>Process-wide libtorch settings, applied once before the first tensor is made.</summary>
public static class TorchRuntime
{
    private static readonly Lock Gate = new();
    private static bool s_initialised;

    /// <summary>Serialises the seed-then-construct step of model initialisation: libtorch's default generator is global.</summary>
    public static Lock InitialisationLock { get; } = new();

    /// <summary>Fixes libtorch's intra-op thread count (a fixed count keeps float reductions reproducible and leaves
    /// cores for Predict) and returns the device heads run on: CUDA when libtorch has it, else CPU.</summary>
    public static torch.Device Initialise(int threads)
    {
        lock (Gate)
        {
            if (!s_initialised)
            {
                torch.set_num_threads(threads);
                s_initialised = true;
            }
        }
        return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
    }
}

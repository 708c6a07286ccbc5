using System.ComponentModel.DataAnnotations;

namespace Graft.Heads;

/// <summary>HeadService settings, bound from the configuration section <c>Graft:Heads</c>.</summary>
public sealed class HeadOptions
{
    public const string Section = "Graft:Heads";

    /// <summary>Root folder of the head registry; a ReadWriteMany volume when several replicas share it.</summary>
    [Required]
    public string RegistryPath { get; set; } = "./data/heads";

    /// <summary>Training jobs that run at once; the rest wait in a queue.</summary>
    [Range(1, 64)]
    public int MaxConcurrentTrainingJobs { get; set; } = 1;

    /// <summary>Jobs that may wait for a slot; one more is refused with RESOURCE_EXHAUSTED.</summary>
    [Range(0, 10_000)]
    public int MaxQueuedTrainingJobs { get; set; } = 32;

    /// <summary>Full registry rescan period: file watchers miss events on network volumes.</summary>
    [Range(0.1, 60)]
    public double RescanIntervalSeconds { get; set; } = 2;

    /// <summary>Memory bound of the loaded-head LRU, in bytes of parameters.</summary>
    [Range(1024, long.MaxValue)]
    public long CacheBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>libtorch intra-op threads. 0: one less than the cores (at least one), so Predict keeps a core.
    /// Fixed at start so results are reproducible on one host.</summary>
    [Range(0, 256)]
    public int TrainingThreads { get; set; }

    /// <summary>Largest number of distinct heads one Predict may name.</summary>
    [Range(1, 10_000)]
    public int MaxHeadsPerPredict { get; set; } = 64;

    /// <summary>Largest number of classes of a classifier.</summary>
    [Range(2, 100_000)]
    public int MaxClasses { get; set; } = 1000;

    /// <summary>Largest number of epochs a spec may ask for.</summary>
    [Range(1, 1_000_000)]
    public int MaxEpochs { get; set; } = 10_000;

    /// <summary>Largest number of feature values (rows x dimension) one training job may hold in memory.</summary>
    [Range(1, int.MaxValue)]
    public int MaxTrainingValues { get; set; } = 200_000_000;

    /// <summary>Largest backbone tail (ONNX bytes) a fine-tuning Train call may send (ResNet18 last-stage: about 34 MB).</summary>
    [Range(1, int.MaxValue)]
    public int MaxTailBytes { get; set; } = 512 * 1024 * 1024;

    /// <summary>Largest parameter count of a head (25088x256 VGG16 head: about 6.4 M).</summary>
    [Range(1, int.MaxValue)]
    public int MaxHeadParameters { get; set; } = 64_000_000;

    /// <summary>Resolved thread count for libtorch.</summary>
    public int EffectiveTrainingThreads => TrainingThreads > 0 ? TrainingThreads : Math.Max(1, Environment.ProcessorCount - 1);
}

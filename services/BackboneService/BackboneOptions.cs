using System.ComponentModel.DataAnnotations;
using Graft.Backbone.Model;

namespace Graft.Backbone;

/// <summary>Which backbone to run and how (configuration section <c>Graft:Backbone</c>).</summary>
public sealed class BackboneOptions : IValidatableObject
{
    public const string Section = "Graft:Backbone";

    /// <summary>Built-in profile name: <c>resnet18</c> (embedded, the default) or <c>vgg16</c> (weights by <see cref="ModelPath"/>).</summary>
    public string Profile { get; set; } = BackboneProfiles.ResNet18Name;

    /// <summary>A JSON profile file (see <see cref="BackboneProfile"/>); overrides <see cref="Profile"/>.</summary>
    public string? ProfilePath { get; set; }

    /// <summary>An inline profile in this section (<c>Graft:Backbone:Definition</c>); overrides <see cref="Profile"/>.</summary>
    public BackboneProfile? Definition { get; set; }

    /// <summary>The ONNX model file; overrides the profile's own path. Relative paths resolve against the app directory.</summary>
    public string? ModelPath { get; set; }

    /// <summary><c>auto</c> (CUDA if it loads, else CPU with a warning), <c>cpu</c>, or <c>cuda</c> (fail start-up without CUDA).</summary>
    [RegularExpression("^(auto|cpu|cuda)$", ErrorMessage = "Graft:Backbone:Device must be one of auto, cpu, cuda.")]
    public string Device { get; set; } = "auto";

    /// <summary>Largest number of inputs run in one ONNX Runtime call.</summary>
    [Range(1, 256)]
    public int MaxBatchSize { get; set; } = 16;

    /// <summary>Longest time the first queued input waits for others to join its batch.</summary>
    [Range(0, 1000)]
    public double MaxQueueDelayMs { get; set; } = 2;

    /// <summary>Feature cache bound in bytes (0 disables the cache). Default 256 MiB.</summary>
    [Range(0, long.MaxValue)]
    public long CacheBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Largest decoded image, in pixels, checked from the codec header before decoding. Default 40 MP.</summary>
    [Range(1, long.MaxValue)]
    public long MaxPixels { get; set; } = 40_000_000;

    /// <summary>Threads inside one ONNX Runtime run (0 = auto: the cores the process may use, shared out between
    /// <see cref="Sessions"/>). ONNX Runtime's own default (one per host core) is never used.</summary>
    [Range(0, 1024, ErrorMessage = "Graft:Backbone:IntraOpThreads must be between 0 (auto) and 1024.")]
    public int IntraOpThreads { get; set; }

    /// <summary>ONNX Runtime sessions run in parallel, each fed by its own batcher worker (0 = auto: one per core, at
    /// most 4, see <see cref="ExecutionLayout"/>). Each session holds its own copy of the weights.</summary>
    [Range(0, 64, ErrorMessage = "Graft:Backbone:Sessions must be between 0 (auto) and 64.")]
    public int Sessions { get; set; }

    /// <summary>Let ONNX Runtime's intra-op threads spin between runs (its own default). Off by default: in a server
    /// the spinning threads take the cores that decode images and answer gRPC.</summary>
    public bool AllowSpinning { get; set; }

    /// <summary>Images the int8 profiles calibrate on (recursively; sub-folders share the count). Default: the copy of
    /// samples/fashion/train and samples/photos/calibration shipped beside the service (<c>calibration/</c>).</summary>
    public string? CalibrationDirectory { get; set; }

    /// <summary>Calibration images an int8 profile uses (0 = the profile's own count, 32 for resnet18-int8).</summary>
    [Range(0, 100_000, ErrorMessage = "Graft:Backbone:CalibrationImages must be between 0 (the profile's count) and 100000.")]
    public int CalibrationImages { get; set; }

    /// <summary>Where quantized models are cached, keyed by the fp32 model's hash. Default: <c>quantized/</c> beside the service.</summary>
    public string? QuantizedCacheDirectory { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ProfilePath is null && Definition is null && !BackboneProfiles.IsBuiltIn(Profile))
        {
            yield return new ValidationResult(
                $"Graft:Backbone:Profile '{Profile}' is not a built-in profile ({string.Join(", ", BackboneProfiles.BuiltInNames)}); " +
                "name one of those, or give Graft:Backbone:ProfilePath or Graft:Backbone:Definition.",
                [nameof(Profile)]);
        }
    }
}

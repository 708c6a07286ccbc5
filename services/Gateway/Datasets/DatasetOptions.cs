using System.ComponentModel.DataAnnotations;

namespace Graft.Gateway.Datasets;

/// <summary>The training-set store (configuration section <c>Graft:Gateway:Datasets</c>): where TrainHead keeps the
/// images and targets of every head it trains, so RetrainHead can train them again on another backbone.</summary>
public sealed class DatasetOptions : IValidatableObject
{
    public const string Section = "Graft:Gateway:Datasets";

    /// <summary>Folder of the store, on the same volume as the head registry (<c>graft up</c>: <c>&lt;data-dir&gt;/datasets</c>;
    /// Kubernetes: the registry volume, mounted into the Gateway too). Empty: no store, nothing is kept and no head is
    /// retrainable.</summary>
    public string? Path { get; set; }

    /// <summary>Default of <c>HeadSpec.keep_training_data</c> when a TrainHead request leaves it unset.</summary>
    public bool KeepTrainingData { get; set; } = true;

    /// <summary>Most bytes of images the whole store may hold (each distinct image counted once).</summary>
    [Range(1024, long.MaxValue)]
    public long MaxStoreBytes { get; set; } = 20L << 30;

    /// <summary>Most bytes of distinct images one training set may hold.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxDatasetBytes { get; set; } = 2L << 30;

    /// <summary>At start-up, a training set no head version names is removed once it is older than this (a training that
    /// crashed, or was refused by HeadService while this gateway was down). Younger ones may belong to a training still
    /// running on another gateway replica.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "30.00:00:00")]
    public TimeSpan OrphanAge { get; set; } = TimeSpan.FromHours(6);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrWhiteSpace(Path) && !System.IO.Path.IsPathFullyQualified(Path))
        {
            yield return new ValidationResult($"{Section}:{nameof(Path)} must be an absolute folder path (got '{Path}').", [nameof(Path)]);
        }
        if (MaxDatasetBytes > MaxStoreBytes)
        {
            yield return new ValidationResult(
                $"{Section}:{nameof(MaxDatasetBytes)} ({MaxDatasetBytes}) is larger than {Section}:{nameof(MaxStoreBytes)} ({MaxStoreBytes}).", [nameof(MaxDatasetBytes)]);
        }
    }
}

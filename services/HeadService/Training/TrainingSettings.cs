using Graft.Heads.Registry;
using Graft.V1;

namespace Graft.Heads.Training;

/// <summary>A training spec with every default resolved and every range checked.</summary>
/// <remarks><see cref="Depth"/> is never <see cref="HeadDepth.Unspecified"/> (that is <see cref="HeadDepth.Mlp"/>) nor
/// <see cref="HeadDepth.Auto"/> (the Gateway resolves it).</remarks>
public sealed record TrainingSettings(
    string Name, HeadKind Kind, string BackboneFingerprint, string Description, HeadHyperparameters Hyperparameters)
{
    /// <summary>The Gateway's training-set id (<c>HeadSpec.dataset</c>), stored with the version as it is.</summary>
    public string Dataset { get; init; } = "";

    /// <summary><c>HeadSpec.keep_training_data</c> when the Gateway set it.</summary>
    public bool? KeepTrainingData { get; init; }

    public const int MaxDepthReasonLength = 1024;

    public HeadDepth Depth { get; init; } = HeadDepth.Mlp;

    /// <summary>Why the Gateway chose this depth (from <c>depth = auto</c>); empty otherwise.</summary>
    public string DepthReason { get; init; } = "";

    /// <summary>Augmented views per training image the Gateway made (<c>HeadSpec.augment</c>), stored for the record.</summary>
    public int Augment { get; init; }

    /// <summary>The cut point whose activations the rows hold; empty for the frozen depths.</summary>
    public string CutPoint => Depth.CutPoint();

    public const int MaxHiddenLayers = 8;
    public const int MaxHiddenSize = 65_536;
    public const int MaxBatchSize = 65_536;
    public const int MaxFingerprintLength = 512;
    public const int MaxDescriptionLength = 4096;

    /// <summary>Checks a spec; every problem is an INVALID_ARGUMENT naming the field and its allowed range.</summary>
    public static TrainingSettings FromSpec(HeadSpec spec, HeadOptions options)
    {
        if (HeadName.Problem(spec.Name) is { } nameProblem)
        {
            throw HeadException.Invalid(nameProblem);
        }
        if (spec.Kind is not (HeadKind.Regressor or HeadKind.Classifier))
        {
            throw HeadException.Invalid("spec.kind must be HEAD_KIND_REGRESSOR or HEAD_KIND_CLASSIFIER.");
        }
        if (string.IsNullOrWhiteSpace(spec.BackboneFingerprint))
        {
            throw HeadException.Invalid("spec.backbone_fingerprint is required: heads refuse features from any other backbone, so they must know theirs.");
        }
        if (spec.BackboneFingerprint.Length > MaxFingerprintLength)
        {
            throw HeadException.Invalid($"spec.backbone_fingerprint is longer than {MaxFingerprintLength} characters.");
        }
        if (spec.Dataset.Length > 0 && (spec.Dataset.Length != 64 || !spec.Dataset.All(char.IsAsciiHexDigitLower)))
        {
            throw HeadException.Invalid("spec.dataset must be empty or a training-set id from the Gateway (64 lower-case hex digits).");
        }
        if (spec.Description.Length > MaxDescriptionLength)
        {
            throw HeadException.Invalid($"spec.description is longer than {MaxDescriptionLength} characters.");
        }
        var depth = spec.Depth == HeadDepth.Unspecified ? HeadDepth.Mlp : spec.Depth;
        switch (depth)
        {
            case HeadDepth.Auto:
                throw HeadException.Invalid(
                    "spec.depth is HEAD_DEPTH_AUTO, which the Gateway resolves from the examples per class before training; HeadService needs the chosen depth (probe, mlp, last-block or last-stage).");
            case HeadDepth.Probe when spec.Hidden is { Sizes.Count: > 0 }:
                throw HeadException.Invalid(
                    $"spec.hidden has {spec.Hidden.Sizes.Count} layer(s) but spec.depth is HEAD_DEPTH_PROBE, a linear layer on the final features; leave hidden empty or use HEAD_DEPTH_MLP.");
            case not (HeadDepth.Probe or HeadDepth.Mlp or HeadDepth.LastBlock or HeadDepth.LastStage):
                throw HeadException.Invalid($"spec.depth is {(int)depth}, which is not a HeadDepth value.");
        }
        if (spec.HasTailLearningRate && !depth.FineTunes())
        {
            throw HeadException.Invalid(
                $"spec.tail_learning_rate is set but spec.depth is {depth.Name()}, which trains no backbone layers; set it only with last-block or last-stage.");
        }
        var tailLr = spec.HasTailLearningRate ? spec.TailLearningRate : TrainingDefaults.TailLearningRateFor(depth);
        Check(double.IsFinite(tailLr) && tailLr >= 0 && tailLr <= 10, $"spec.tail_learning_rate is {tailLr}; it must be in [0, 10] (0 keeps the backbone layers as pretrained).");
        if (spec.DepthReason.Length > MaxDepthReasonLength)
        {
            throw HeadException.Invalid($"spec.depth_reason is longer than {MaxDepthReasonLength} characters.");
        }
        // A probe has no hidden layer; a fine-tuning depth puts a linear layer on the retrained tail unless hidden
        // sizes are given (the tail already is the deep part, and a linear layer is what the measured prototype used).
        int[] hidden = spec.Hidden is not null ? spec.Hidden.Sizes.ToArray()
            : depth == HeadDepth.Mlp ? [TrainingDefaults.HiddenSize]
            : [];
        if (hidden.Length > MaxHiddenLayers)
        {
            throw HeadException.Invalid($"spec.hidden has {hidden.Length} layers; at most {MaxHiddenLayers} are allowed.");
        }
        for (var i = 0; i < hidden.Length; i++)
        {
            if (hidden[i] is < 1 or > MaxHiddenSize)
            {
                throw HeadException.Invalid($"spec.hidden.sizes[{i}] is {hidden[i]}; each size must be in [1, {MaxHiddenSize}].");
            }
        }
        var epochs = spec.HasEpochs ? spec.Epochs : TrainingDefaults.EpochsFor(depth);
        Check(epochs is >= 1 && epochs <= options.MaxEpochs, $"spec.epochs is {epochs}; it must be in [1, {options.MaxEpochs}].");
        var lr = spec.HasLearningRate ? spec.LearningRate : TrainingDefaults.LearningRate;
        Check(double.IsFinite(lr) && lr > 0 && lr <= 10, $"spec.learning_rate is {lr}; it must be in (0, 10].");
        var batch = spec.HasBatchSize ? spec.BatchSize : TrainingDefaults.BatchSize;
        Check(batch is >= 1 and <= MaxBatchSize, $"spec.batch_size is {batch}; it must be in [1, {MaxBatchSize}].");
        var decay = spec.HasWeightDecay ? spec.WeightDecay : TrainingDefaults.WeightDecay;
        Check(double.IsFinite(decay) && decay >= 0 && decay <= 1, $"spec.weight_decay is {decay}; it must be in [0, 1].");
        var validation = spec.HasValidationFraction ? spec.ValidationFraction : TrainingDefaults.ValidationFractionFor(depth);
        Check(double.IsFinite(validation) && validation >= 0 && validation <= 0.9, $"spec.validation_fraction is {validation}; it must be in [0, 0.9].");
        var patience = spec.HasPatience ? spec.Patience : TrainingDefaults.Patience;
        Check(patience >= 0 && patience <= options.MaxEpochs, $"spec.patience is {patience}; it must be in [0, {options.MaxEpochs}] (0 disables early stopping).");
        Check(patience == 0 || validation > 0, "spec.patience > 0 needs validation rows to watch; set validation_fraction above 0 (fine-tuning depths hold out none unless asked) or patience to 0.");
        var dropout = spec.HasDropout ? spec.Dropout : TrainingDefaults.Dropout;
        Check(double.IsFinite(dropout) && dropout >= 0 && dropout < 1, $"spec.dropout is {dropout}; it must be in [0, 1).");
        var seed = spec.HasSeed ? spec.Seed : TrainingDefaults.Seed;
        if (spec.Kind == HeadKind.Regressor)
        {
            // The documented regressor has no dropout.
            dropout = 0;
        }
        return new TrainingSettings(spec.Name, spec.Kind, spec.BackboneFingerprint, spec.Description,
            new HeadHyperparameters(epochs, lr, batch, decay, validation, patience, seed, dropout, hidden, spec.Hidden is not null)
            {
                TailLearningRate = depth.FineTunes() ? tailLr : 0,
            })
        {
            Depth = depth,
            DepthReason = spec.DepthReason,
            Augment = spec.HasAugment ? Math.Max(0, spec.Augment) : 0,
            Dataset = spec.Dataset,
            KeepTrainingData = spec.HasKeepTrainingData ? spec.KeepTrainingData : null,
        };
    }

    private static void Check(bool ok, string message)
    {
        if (!ok)
        {
            throw HeadException.Invalid(message);
        }
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;
using Graft.V1;

namespace Graft.Heads.Registry;

/// <summary>The contents of <c>head.json</c>: everything needed to rebuild, check and describe one head version.</summary>
public sealed record HeadManifest
{
    /// <summary>Frozen-feature versions are written as format 1, which every release reads; fine-tuned versions as
    /// format 2, so a replica that predates fine-tuning refuses them (and keeps serving the previous version) instead
    /// of running their head layers without their tail.</summary>
    public const int CurrentFormat = 1;
    public const int FineTunedFormat = 2;
    public const string TailFileName = "tail.onnx";
    public const string FileName = "head.json";
    public const string WeightsFileName = "weights.safetensors";

    public int Format { get; init; } = CurrentFormat;
    public required string Name { get; init; }
    public int Version { get; init; }
    /// <summary>Stored as "regressor" or "classifier" (<see cref="HeadKinds"/>).</summary>
    public required HeadKind Kind { get; init; }
    public IReadOnlyList<string> Labels { get; init; } = [];
    public int InputDimension { get; init; }
    public required string BackboneFingerprint { get; init; }
    public IReadOnlyList<int> HiddenSizes { get; init; } = [];
    public double Dropout { get; init; }
    /// <summary>Feature standardisation fitted on the training rows: x' = (x - mean) / std.</summary>
    public required float[] FeatureMean { get; init; }
    public required float[] FeatureStd { get; init; }
    /// <summary>Regressor target standardisation; outputs are mapped back with y = y' * std + mean.</summary>
    public double TargetMean { get; init; }
    public double TargetStd { get; init; } = 1;
    public required HeadHyperparameters Hyperparameters { get; init; }
    public string Description { get; init; } = "";
    public required HeadMetricsRecord Metrics { get; init; }
    public DateTimeOffset Created { get; init; }
    public string WeightsFile { get; init; } = WeightsFileName;
    /// <summary>Lower-case hex SHA-256 of the weights file, checked at every load to catch truncation or corruption.</summary>
    public required string WeightsSha256 { get; init; }
    public long WeightsBytes { get; init; }
    public long ParameterCount { get; init; }
    /// <summary>The Gateway's id of the stored training set (<c>HeadSpec.dataset</c>); empty when none was kept.</summary>
    public string Dataset { get; init; } = "";
    /// <summary><c>HeadSpec.keep_training_data</c> as the Gateway resolved it; null when it did not say (trained from
    /// features, or before training sets were kept).</summary>
    public bool? KeepTrainingData { get; init; }
    /// <summary>How deep training reached ("probe", "mlp", "last-block", "last-stage").</summary>
    public HeadDepth Depth { get; init; } = HeadDepth.Mlp;
    /// <summary>Why the Gateway chose this depth (depth = auto); empty otherwise.</summary>
    public string DepthReason { get; init; } = "";
    /// <summary>Augmented views per training image besides the original (<c>HeadSpec.augment</c>); 0 for none, and for
    /// versions written before it was stored.</summary>
    public int Augment { get; init; }
    /// <summary>Fine-tuned versions: the cut point whose activations the version takes, their shape without the batch
    /// dimension, and the retrained tail (ONNX, pretrained graph with the trained weights written into its
    /// initializers), checked by size and SHA-256 like the weights. Empty for frozen-feature versions, whose input is
    /// the final features; for fine-tuned ones <see cref="InputDimension"/> and the standardisation are the tail's output.</summary>
    public string CutPoint { get; init; } = "";
    public IReadOnlyList<long> CutShape { get; init; } = [];
    public string TailFile { get; init; } = "";
    public string TailSha256 { get; init; } = "";
    public long TailBytes { get; init; }
    public long TailParameterCount { get; init; }

    /// <summary>True for a version that takes cut-point activations through its own retrained tail.</summary>
    [JsonIgnore]
    public bool FineTuned => CutPoint.Length > 0;

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new HeadKindConverter(), new HeadDepthConverter() },
    };

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    /// <summary>Parses and sanity-checks a manifest; throws <see cref="InvalidDataException"/> when it is unusable.</summary>
    public static HeadManifest Parse(byte[] json)
    {
        HeadManifest? m;
        try
        {
            m = JsonSerializer.Deserialize<HeadManifest>(json, Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{FileName} is not valid JSON: {e.Message}", e);
        }
        if (m is null)
        {
            throw new InvalidDataException($"{FileName} is empty.");
        }
        if (m.Format is not (CurrentFormat or FineTunedFormat))
        {
            throw new InvalidDataException($"{FileName} has format {m.Format}; this service reads formats {CurrentFormat} and {FineTunedFormat}.");
        }
        if (m.FineTuned != (m.Format == FineTunedFormat) || m.FineTuned != (m.TailFile.Length > 0)
            || (m.FineTuned && (m.TailSha256.Length != 64 || m.CutShape.Count == 0 || m.TailFile.Contains('/') || m.TailFile.Contains(".."))))
        {
            throw new InvalidDataException($"{FileName} has an inconsistent fine-tuned tail reference (format {m.Format}, cut point '{m.CutPoint}', tail file '{m.TailFile}').");
        }
        if (m.InputDimension <= 0 || m.FeatureMean.Length != m.InputDimension || m.FeatureStd.Length != m.InputDimension)
        {
            throw new InvalidDataException($"{FileName} has inconsistent input dimension / normalisation lengths.");
        }
        if (m.Kind == HeadKind.Classifier && m.Labels.Count < 2)
        {
            throw new InvalidDataException($"{FileName} describes a classifier with fewer than two labels.");
        }
        if (m.WeightsSha256.Length != 64 || m.WeightsFile.Contains('/') || m.WeightsFile.Contains(".."))
        {
            throw new InvalidDataException($"{FileName} has an invalid weights reference.");
        }
        return m;
    }
}

/// <summary>Reads and writes <see cref="HeadKind"/> as its word; an unknown word is an unusable manifest.</summary>
internal sealed class HeadKindConverter : JsonConverter<HeadKind>
{
    public override HeadKind Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var word = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        return HeadKinds.TryParse(word, out var kind)
            ? kind
            : throw new InvalidDataException($"{HeadManifest.FileName} has unknown kind '{word ?? reader.TokenType.ToString()}'.");
    }

    public override void Write(Utf8JsonWriter writer, HeadKind value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name());
}

/// <summary>The training settings a version was made with (defaults resolved).</summary>
public sealed record HeadHyperparameters(
    int Epochs, double LearningRate, int BatchSize, double WeightDecay,
    double ValidationFraction, int Patience, long Seed, double Dropout, IReadOnlyList<int> HiddenSizes, bool HiddenSpecified)
{
    /// <summary>Adam learning rate of the fine-tuned backbone layers; 0 for the frozen depths.</summary>
    public double TailLearningRate { get; init; }
}

/// <summary>Validation metrics stored with a version (mirrors <c>graft.v1.HeadMetrics</c>).</summary>
public sealed record HeadMetricsRecord
{
    public int TrainRows { get; init; }
    public int ValidationRows { get; init; }
    public int EpochsRun { get; init; }
    public double TrainingSeconds { get; init; }
    public double FinalTrainLoss { get; init; }
    public double ValidationLoss { get; init; }
    public double Mae { get; init; }
    public double Rmse { get; init; }
    public double R2 { get; init; }
    public double BaselineMae { get; init; }
    public double Accuracy { get; init; }
    public double BaselineAccuracy { get; init; }
    public IReadOnlyList<ClassMetricsRecord> PerClass { get; init; } = [];
    public IReadOnlyList<int> ConfusionMatrix { get; init; } = [];
}

public sealed record ClassMetricsRecord(string Label, double Precision, double Recall, int Support);

/// <summary>Reads and writes <see cref="HeadDepth"/> as its word; an unknown word is an unusable manifest.</summary>
internal sealed class HeadDepthConverter : JsonConverter<HeadDepth>
{
    public override HeadDepth Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var word = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        return HeadDepths.TryParse(word, out var depth) && depth != HeadDepth.Auto
            ? depth
            : throw new InvalidDataException($"{HeadManifest.FileName} has unknown depth '{word ?? reader.TokenType.ToString()}'.");
    }

    public override void Write(Utf8JsonWriter writer, HeadDepth value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name());
}

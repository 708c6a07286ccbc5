using System.Text.Json;
using System.Text.Json.Serialization;

namespace Graft.Gateway.Datasets;

/// <summary>One stored training set (<c>datasets/&lt;id&gt;.json</c>): the spec it was trained with and every example as
/// the SHA-256 of its image bytes (in <c>images/</c>) with its label or target value, in upload order.</summary>
public sealed record DatasetManifest
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    /// <summary>Lower-case hex SHA-256 over the spec and the examples: the same images, targets and spec give the same id.</summary>
    public required string Id { get; init; }

    /// <summary>The head it was first stored for.</summary>
    public required string Head { get; init; }

    public DateTimeOffset Created { get; init; }

    /// <summary>The HeadSpec as protobuf JSON, without the backbone fingerprint (a retrain uses the backbone in use).</summary>
    public required JsonElement Spec { get; init; }

    public required IReadOnlyList<DatasetExample> Examples { get; init; }

    /// <summary>Distinct images and their total bytes.</summary>
    public int Images { get; init; }

    public long ImageBytes { get; init; }

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = false,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>One example: its image's SHA-256 and either a classifier label or a regressor value.</summary>
public sealed record DatasetExample(string Image, string? Label = null, double? Value = null);

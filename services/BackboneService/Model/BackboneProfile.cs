using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Graft.Backbone.Model;

/// <summary>Channel order the model expects.</summary>
public enum ColorOrder
{
    Rgb,
    Bgr,
}

/// <summary>How an image of any aspect ratio becomes the model's input size.</summary>
public enum ResizeMode
{
    /// <summary>Resize so the shorter side is <see cref="BackboneProfile.ResizeShorterSideTo"/>, then crop the centre
    /// to the input size (torchvision's Resize + CenterCrop, ML.NET's IsoCrop). Square images are simply resized.</summary>
    ShorterSideCentreCrop,

    /// <summary>Resize both sides to the input size, ignoring the aspect ratio (for spectrogram-like inputs).</summary>
    Stretch,
}

/// <summary>Everything needed to run one ONNX CNN as a backbone: the model, its input, its preprocessing and the cut point.
/// Preprocessing applied per pixel, in this order: <c>v = byte * Scale</c>; <c>v -= MeanImage[c,y,x]</c> (if any);
/// <c>v = (v - Mean[c]) / Std[c]</c>, with channels in <see cref="ColorOrder"/>.</summary>
public sealed class BackboneProfile
{
    /// <summary>Short name reported by Describe and used as the fingerprint prefix, e.g. <c>resnet18</c>.</summary>
    public string Name { get; set; } = "";

    /// <summary>The ONNX model file (relative paths resolve against the app directory).</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>The graph input to feed; empty means the model's only non-initializer input.</summary>
    public string? InputName { get; set; }

    public int InputWidth { get; set; } = 224;

    public int InputHeight { get; set; } = 224;

    public ColorOrder ColorOrder { get; set; } = ColorOrder.Rgb;

    /// <summary>Multiplier applied to 0–255 pixel values (1 keeps 0–255; 1/255 gives 0–1).</summary>
    public float Scale { get; set; } = 1f;

    /// <summary>Per-channel mean, in model channel order, subtracted after scaling (three values, or empty).</summary>
    public float[] Mean { get; set; } = [];

    /// <summary>Per-channel standard deviation, in model channel order (three values, or empty).</summary>
    public float[] Std { get; set; } = [];

    /// <summary>An ONNX file holding a per-pixel mean image as an initializer [1,3,H,W] (model channel order).</summary>
    public string? MeanImagePath { get; set; }

    /// <summary>Name of the mean-image initializer inside <see cref="MeanImagePath"/>.</summary>
    public string? MeanImageInitializer { get; set; }

    public ResizeMode Resize { get; set; } = ResizeMode.ShorterSideCentreCrop;

    /// <summary>Target of the shorter side before the centre crop; 0 means the input size (no margin cropped).</summary>
    public int ResizeShorterSideTo { get; set; }

    /// <summary>Tensor to read features from; empty means "find it": the input of the first fully-connected layer.</summary>
    public string? CutTensor { get; set; }

    /// <summary>Earlier cut points a head may fine-tune from, name → tensor (e.g. <c>"last-block": "ReLU365_Output_0"</c>);
    /// empty means "find them" by the graph's structure (<see cref="CutPointFinder"/>).</summary>
    public Dictionary<string, string>? CutPoints { get; set; }

    /// <summary>Static int8 quantization of the cut model at start-up (cached on disk), or null for fp32.</summary>
    public Graft.Backbone.Quantization.QuantizationSettings? Quantization { get; set; }

    /// <summary>A one-line account of the preprocessing, part of the fingerprint and reported by Describe.</summary>
    public string DescribePreprocessing()
    {
        var inv = CultureInfo.InvariantCulture;
        var parts = new List<string>
        {
            Resize == ResizeMode.Stretch
                ? $"resize to {InputWidth}x{InputHeight} (aspect ignored)"
                : $"resize shorter side to {EffectiveShorterSide}, centre crop {InputWidth}x{InputHeight}",
            "alpha over white",
            ColorOrder == ColorOrder.Bgr ? "BGR" : "RGB",
            Scale == 1f ? "0-255" : string.Create(inv, $"0-255 x {Scale:R}"),
        };
        if (MeanImagePath is not null)
        {
            parts.Add($"minus mean image {MeanImageInitializer} of {Path.GetFileName(MeanImagePath)}");
        }
        if (Mean.Length > 0)
        {
            parts.Add(string.Create(inv, $"minus mean [{string.Join(", ", Mean.Select(m => m.ToString("R", inv)))}]"));
        }
        if (Std.Length > 0)
        {
            parts.Add(string.Create(inv, $"divided by std [{string.Join(", ", Std.Select(s => s.ToString("R", inv)))}]"));
        }
        return string.Join(", ", parts);
    }

    /// <summary>The shorter-side resize target in effect.</summary>
    [JsonIgnore]
    public int EffectiveShorterSide => ResizeShorterSideTo > 0 ? ResizeShorterSideTo : Math.Max(InputWidth, InputHeight);

    /// <summary>A copy, so resolving paths never changes the configured instance.</summary>
    public BackboneProfile Clone() => (BackboneProfile)MemberwiseClone();

    /// <summary>Checks the profile and returns every problem found, each naming the field and what is accepted.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(Name)) problems.Add("Name is empty; give a short backbone name such as 'resnet18'.");
        if (string.IsNullOrWhiteSpace(ModelPath)) problems.Add("ModelPath is empty; give the path of the ONNX model file.");
        if (InputWidth is < 1 or > 4096 || InputHeight is < 1 or > 4096) problems.Add($"InputWidth/InputHeight {InputWidth}x{InputHeight} must be 1..4096.");
        if (Mean.Length is not (0 or 3)) problems.Add($"Mean has {Mean.Length} values; give 3 (one per channel) or none.");
        if (Std.Length is not (0 or 3)) problems.Add($"Std has {Std.Length} values; give 3 (one per channel) or none.");
        if (Std.Any(s => !(s > 0))) problems.Add("Std values must be positive.");
        if ((MeanImagePath is null) != (MeanImageInitializer is null)) problems.Add("MeanImagePath and MeanImageInitializer go together; give both or neither.");
        if (Quantization is { } q && (q.CalibrationImages < 1 || !(q.Percentile is > 90 and <= 100)))
        {
            problems.Add($"Quantization needs CalibrationImages of at least 1 (is {q.CalibrationImages}) and a Percentile in (90, 100] (is {q.Percentile}).");
        }
        if (ResizeShorterSideTo != 0 && ResizeShorterSideTo < Math.Max(InputWidth, InputHeight))
        {
            problems.Add($"ResizeShorterSideTo {ResizeShorterSideTo} is smaller than the input size; give 0 or at least {Math.Max(InputWidth, InputHeight)}.");
        }
        return problems;
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNameCaseInsensitive = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Reads a profile from a JSON file (property names as on this class, enums as strings).</summary>
    public static BackboneProfile LoadFile(string path)
    {
        using var stream = File.OpenRead(path);
        return JsonSerializer.Deserialize<BackboneProfile>(stream, JsonOptions)
            ?? throw new InvalidDataException($"Backbone profile file '{path}' is empty.");
    }
}

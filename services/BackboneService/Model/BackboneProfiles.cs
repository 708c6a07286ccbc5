namespace Graft.Backbone.Model;

/// <summary>The built-in profiles, and how options pick the profile in effect.</summary>
public static class BackboneProfiles
{
    public const string ResNet18Name = "resnet18";
    public const string Vgg16Name = "vgg16";
    public const string ResNet18Int8Name = "resnet18-int8";

    public static IReadOnlyList<string> BuiltInNames { get; } = [ResNet18Name, ResNet18Int8Name, Vgg16Name];

    public static bool IsBuiltIn(string name) => BuiltInNames.Contains(name, StringComparer.OrdinalIgnoreCase);

    /// <summary>The embedded ImageNet ResNet18 (CNTK export shipped in Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1).
    /// Its preprocessing graph (ResNetPreprocess.onnx) takes RGB planes 0–255, reorders them to BGR and subtracts the
    /// per-pixel mean image; ML.NET feeds it an IsoCrop (shorter side to 224, centre crop) resize. The graph already
    /// ends at the global average pool (512×1×1), which is the cut.</summary>
    public static BackboneProfile ResNet18() => new()
    {
        Name = ResNet18Name,
        ModelPath = "DnnImageModels/ResNet18Onnx/ResNet18.onnx",
        InputName = "Input247",
        InputWidth = 224,
        InputHeight = 224,
        ColorOrder = ColorOrder.Bgr,
        Scale = 1f,
        MeanImagePath = "DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx",
        MeanImageInitializer = "MeanImage",
        Resize = ResizeMode.ShorterSideCentreCrop,
        ResizeShorterSideTo = 224,
        CutTensor = "Pooling395_Output_0",
    };

    /// <summary>The embedded ResNet18 quantized to int8 at start-up (static QDQ: per-channel int8 weights, per-tensor uint8
    /// activations calibrated on images; see <see cref="Quantization.Int8Quantizer"/>). Its own fingerprint, so heads
    /// trained on fp32 features show as stale on it.</summary>
    public static BackboneProfile ResNet18Int8()
    {
        var profile = ResNet18();
        profile.Name = ResNet18Int8Name;
        profile.Quantization = new Quantization.QuantizationSettings();
        return profile;
    }

    /// <summary>VGG16 as exported by torchvision or the ONNX model zoo (vgg16-7.onnx): RGB, 0–1, ImageNet mean/std,
    /// shorter side to 256 then centre crop 224. Weights are supplied by path (about 528 MB, not shipped); the cut is
    /// found in the graph (pool5, 512×7×7 = 25088 features) so the fully-connected weights are never loaded.</summary>
    public static BackboneProfile Vgg16() => new()
    {
        Name = Vgg16Name,
        ModelPath = "models/vgg16.onnx",
        InputWidth = 224,
        InputHeight = 224,
        ColorOrder = ColorOrder.Rgb,
        Scale = 1f / 255f,
        Mean = [0.485f, 0.456f, 0.406f],
        Std = [0.229f, 0.224f, 0.225f],
        Resize = ResizeMode.ShorterSideCentreCrop,
        ResizeShorterSideTo = 256,
    };

    /// <summary>The profile in effect: the inline definition, else the profile file, else the named built-in;
    /// <see cref="BackboneOptions.ModelPath"/> overrides the model path. Relative paths resolve against <paramref name="baseDirectory"/>.</summary>
    public static BackboneProfile Resolve(BackboneOptions options, string baseDirectory)
    {
        var profile = options.Definition?.Clone()
            ?? (options.ProfilePath is { } file ? BackboneProfile.LoadFile(Path.GetFullPath(file, baseDirectory)) : null)
            ?? (options.Profile.ToLowerInvariant() switch
            {
                ResNet18Name => ResNet18(),
                ResNet18Int8Name => ResNet18Int8(),
                Vgg16Name => Vgg16(),
                var other => throw new InvalidOperationException($"Unknown backbone profile '{other}'; built-in profiles are {string.Join(", ", BuiltInNames)}."),
            });
        if (options.ModelPath is { Length: > 0 } modelPath) profile.ModelPath = modelPath;
        if (options.CalibrationImages > 0 && profile.Quantization is { } q)
        {
            profile.Quantization = new Quantization.QuantizationSettings { Method = q.Method, Percentile = q.Percentile, CalibrationImages = options.CalibrationImages };
        }
        var problems = profile.Problems();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException($"Backbone profile '{profile.Name}' is invalid: {string.Join(" ", problems)}");
        }
        profile.ModelPath = Path.GetFullPath(profile.ModelPath, baseDirectory);
        if (profile.MeanImagePath is { } meanPath) profile.MeanImagePath = Path.GetFullPath(meanPath, baseDirectory);
        return profile;
    }
}

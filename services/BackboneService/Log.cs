namespace Graft.Backbone;

/// <summary>The backbone's log events (stable ids 2000–2099).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Loading backbone {Profile} from {ModelPath}")]
    public static partial void LoadingModel(ILogger logger, string profile, string modelPath);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Cut at {CutTensor}: removed {RemovedNodes} nodes and {RemovedParameters} parameters, kept {KeptParameters} parameters")]
    public static partial void GraphCut(ILogger logger, string cutTensor, int removedNodes, long removedParameters, long keptParameters);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "CUDA execution provider unavailable, falling back to CPU: {Reason}")]
    public static partial void CudaFallback(ILogger logger, string reason);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Backbone {Profile} ready on {ExecutionProvider}: fingerprint {Fingerprint}, {FeatureDimension} features, warm-up {WarmupMs:F0} ms")]
    public static partial void Ready(ILogger logger, string profile, string executionProvider, string fingerprint, int featureDimension, double warmupMs);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Dropped {Count} cancelled or expired requests before the run")]
    public static partial void DroppedExpired(ILogger logger, int count);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "Batch of {Count} failed in ONNX Runtime")]
    public static partial void BatchFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Execution layout: {Layout}; {Origin} (Graft:Backbone:Sessions, IntraOpThreads, AllowSpinning)")]
    public static partial void Layout(ILogger logger, string layout, string origin);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Quantizing {Profile} to int8 on {Images} calibration images from {CalibrationDirectory} ({Settings}); done once, then cached")]
    public static partial void Quantizing(ILogger logger, string profile, int images, string calibrationDirectory, string settings);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Information, Message = "Quantized: {Report} in {Seconds:F1} s, cached at {Path}")]
    public static partial void Quantized(ILogger logger, string report, double seconds, string path);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Loaded the quantized model from the cache {Path}")]
    public static partial void QuantizedFromCache(ILogger logger, string path);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Critical, Message = "The batch collector failed; the backbone refuses new requests until restarted")]
    public static partial void CollectorFailed(ILogger logger, Exception exception);
}

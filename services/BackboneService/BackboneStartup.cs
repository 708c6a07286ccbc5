using Graft.ServiceDefaults;

namespace Graft.Backbone;

/// <summary>Loads the model at start-up (a bad profile or an unavailable required device stops the host with a clear
/// message), runs a warm-up batch, and only then marks the service ready.</summary>
internal sealed class BackboneStartup(IServiceProvider services, ReadinessGate gate, ILogger<BackboneStartup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        gate.MarkNotReady("loading the backbone model");
        var (backbone, warmup) = services.GetRequiredService<FeatureExtractor>().WarmUp();
        Log.Ready(logger, backbone.Name, backbone.ExecutionProvider, backbone.Fingerprint, backbone.FeatureDimension, warmup.TotalMilliseconds);
        gate.MarkReady();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        gate.MarkNotReady("stopping");
        return Task.CompletedTask;
    }
}

using Graft.Backbone.Batching;
using Graft.Backbone.Caching;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Backbone.Quantization;
using Graft.Backbone.Services;
using Graft.Backbone.Telemetry;
using Graft.ServiceDefaults;
using Microsoft.Extensions.Options;

namespace Graft.Backbone;

/// <summary>Registration of the backbone service.</summary>
public static class BackboneServiceCollectionExtensions
{
    /// <summary>Registers options (<c>Graft:Backbone</c>), the model, preprocessing, batching, cache, metrics,
    /// readiness and the start-up warm-up.</summary>
    public static IHostApplicationBuilder AddBackbone(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddValidatedOptions<BackboneOptions>(builder.Configuration, BackboneOptions.Section);
        services.AddReadinessGate("backbone");
        services.AddSingleton<BackboneMetrics>();
        services.AddSingleton(sp => BackboneProfiles.Resolve(Options(sp), AppContext.BaseDirectory));
        services.AddSingleton(sp => ExecutionLayout.Resolve(Options(sp)));
        services.AddSingleton(sp => new QuantizedModelStore(
            Path.GetFullPath(Options(sp).QuantizedCacheDirectory ?? "quantized", AppContext.BaseDirectory),
            Path.GetFullPath(Options(sp).CalibrationDirectory ?? "calibration", AppContext.BaseDirectory),
            sp.GetRequiredService<Preprocessor>(), sp.GetRequiredService<ILogger<QuantizedModelStore>>()));
        services.AddSingleton(sp => BackboneModel.Load(
            sp.GetRequiredService<BackboneProfile>(), Options(sp).Device, sp.GetRequiredService<ExecutionLayout>(), sp.GetRequiredService<ILogger<BackboneModel>>(),
            (cut, input) => sp.GetRequiredService<QuantizedModelStore>().GetOrCreate(cut, input, sp.GetRequiredService<BackboneProfile>())));
        services.AddSingleton(sp => Preprocessor.Create(sp.GetRequiredService<BackboneProfile>(), Options(sp).MaxPixels));
        services.AddSingleton(sp => new DynamicBatcher(
            sp.GetRequiredService<BackboneModel>(), Options(sp).MaxBatchSize, TimeSpan.FromMilliseconds(Options(sp).MaxQueueDelayMs),
            sp.GetRequiredService<BackboneMetrics>(), sp.GetRequiredService<ILogger<DynamicBatcher>>()));
        services.AddSingleton(sp => new FeatureCache(Options(sp).CacheBytes, sp.GetRequiredService<BackboneModel>().Fingerprint));
        services.AddSingleton<FeatureExtractor>();
        services.AddHostedService<BackboneStartup>();
        return builder;
    }

    /// <summary>Maps the <c>graft.v1.Backbone</c> gRPC service.</summary>
    public static WebApplication MapBackbone(this WebApplication app)
    {
        app.MapGrpcService<BackboneGrpcService>();
        return app;
    }

    private static BackboneOptions Options(IServiceProvider sp) => sp.GetRequiredService<IOptions<BackboneOptions>>().Value;
}

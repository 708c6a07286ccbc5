using Graft.Heads.Registry;
using Graft.Heads.Serving;
using Graft.Heads.Services;
using Graft.Heads.Training;
using Graft.ServiceDefaults;

namespace Graft.Heads;

/// <summary>Registration of everything HeadService needs.</summary>
public static class HeadServiceCollectionExtensions
{
    /// <summary>Options (validated at start), registry and its watcher, trainer, scheduler, serving cache, metrics,
    /// and the readiness gate (ready after the first registry scan).</summary>
    public static IHostApplicationBuilder AddHeads(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddValidatedOptions<HeadOptions>(builder.Configuration, HeadOptions.Section);
        services.AddReadinessGate("heads");
        services.AddSingleton<HeadsTelemetry>();
        services.AddSingleton<HeadRegistry>();
        services.AddHostedService<RegistryWatcher>();
        services.AddSingleton<HeadCache>();
        services.AddSingleton<VersionTraffic>();
        services.AddSingleton<HeadInference>();
        services.AddSingleton<HeadTrainer>();
        services.AddSingleton<TrainingScheduler>();
        services.AddSingleton<TrainingCoordinator>();
        return builder;
    }

    /// <summary>Maps the <c>graft.v1.Heads</c> gRPC service.</summary>
    public static WebApplication MapHeads(this WebApplication app)
    {
        app.MapGrpcService<HeadsGrpcService>();
        return app;
    }
}

using Graft.Gateway.Auth;
using Graft.Gateway.Datasets;
using Graft.Gateway.Downstream;
using Graft.Gateway.Flows;
using Graft.Gateway.Http;
using Graft.Gateway.Services;
using Graft.ServiceDefaults;
using Microsoft.Extensions.Options;

namespace Graft.Gateway;

/// <summary>Registration of everything the gateway needs.</summary>
public static partial class GatewayServiceCollectionExtensions
{
    /// <summary>Options, downstream clients with their resilience pipelines, the bearer-token check, and the API's parts.</summary>
    public static IHostApplicationBuilder AddGateway(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddValidatedOptions<GatewayOptions>(builder.Configuration, GatewayOptions.Section);
        var options = builder.Configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();

        services.AddSingleton<DownstreamMetrics>();
        services.AddSingleton<BackboneIdentity>();
        services.AddDownstreamClients(options);
        services.AddTransient<BackboneDownstream>();
        services.AddTransient<HeadsDownstream>();
        services.AddTransient<PredictionFlow>();
        services.AddTransient<TrainingFlow>();
        services.AddTransient<ExportFlow>();

        services.AddValidatedOptions<DatasetOptions>(builder.Configuration, DatasetOptions.Section);
        services.AddSingleton<DatasetStore>();
        services.AddTransient<DatasetReferences>();
        services.AddHostedService<DatasetCollector>();

        services.AddSingleton<BearerTokenInterceptor>();
        var grpc = services.AddGrpc().AddServiceOptions<GatewayService>(o => o.Interceptors.Add<BearerTokenInterceptor>());
        services.AddGatewayHttp(grpc, options);
        // The gateway is always "ready": downstream trouble is reported per call (fast UNAVAILABLE), not by flapping health.
        services.AddReadinessGate("gateway");
        services.AddHostedService<StartupReport>();
        return builder;
    }

    /// <summary>Marks the gateway ready and says, once, how it is protected.</summary>
    private sealed partial class StartupReport(ReadinessGate gate, IOptions<GatewayOptions> options, ILogger<StartupReport> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            var o = options.Value;
            LogAccess(logger, o.BackboneAddress, o.HeadsAddress,
                !string.IsNullOrWhiteSpace(o.AdminToken) ? "token" : o.AllowUnauthenticatedAdmin ? "OPEN (AllowUnauthenticatedAdmin)" : "disabled (no admin token)",
                !string.IsNullOrWhiteSpace(o.PredictToken) ? "token" : "open");
            gate.MarkReady();
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 4000, Level = LogLevel.Information, Message = "Gateway over backbone {Backbone} and heads {Heads}; admin calls: {Admin}; predict calls: {Predict}")]
        private static partial void LogAccess(ILogger logger, string backbone, string heads, string admin, string predict);
    }
}

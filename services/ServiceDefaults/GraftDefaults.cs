using System.Diagnostics.Metrics;
using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace Graft.ServiceDefaults;

/// <summary>What every Graft service shares: gRPC with limits and error translation, health,
/// reflection, OpenTelemetry metrics with a Prometheus endpoint, and structured logging.</summary>
public static class GraftDefaults
{
    /// <summary>Health-check tag for "ready to serve" (model loaded and warm, registry scanned...).</summary>
    public const string ReadyTag = "ready";

    /// <summary>All Graft meters start with this prefix, so one wildcard exports them all.</summary>
    public const string MeterPrefix = "Graft";

    public static IHostApplicationBuilder AddServiceDefaults(this IHostApplicationBuilder builder)
    {
        // `dotnet path/to/Graft.X.dll` from another folder makes that folder the content root, where the service's
        // appsettings.json (endpoints, protocols) is not. Read the shipped copy too, at the lowest precedence.
        var shipped = Path.Combine(AppContext.BaseDirectory, "appsettings.json");
        if (File.Exists(shipped) && !File.Exists(Path.Combine(builder.Environment.ContentRootPath, "appsettings.json")))
        {
            builder.Configuration.Sources.Insert(0, new JsonConfigurationSource
            {
                Path = "appsettings.json",
                Optional = true,
                FileProvider = new PhysicalFileProvider(AppContext.BaseDirectory),
            });
        }

        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.IncludeScopes = false;
        });

        builder.Services.AddValidatedOptions<LimitOptions>(builder.Configuration, LimitOptions.Section);
        var limitValues = builder.Configuration.GetSection(LimitOptions.Section).Get<LimitOptions>() ?? new LimitOptions();

        builder.Services.AddSingleton<RpcMetrics>();
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = limitValues.MaxMessageBytes;
            o.MaxSendMessageSize = limitValues.MaxMessageBytes;
            // Never send exception text to clients; the interceptor logs it instead.
            o.EnableDetailedErrors = false;
            o.Interceptors.Add<ServerErrorInterceptor>();
        });
        builder.Services.AddGrpcReflection();
        builder.Services.AddHealthChecks();
        builder.Services.AddGrpcHealthChecks(o =>
        {
            // "" is what clients and Kubernetes probe by default: serving only when ready.
            o.Services.Map("", r => r.Tags.Contains(ReadyTag));
            // "liveness": the process answers; used by the liveness probe so a slow warm-up is not a restart.
            o.Services.Map("liveness", _ => false);
        });

        builder.Services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(MeterPrefix + "*")
            .AddAspNetCoreInstrumentation()
            .AddPrometheusExporter());
        return builder;
    }

    /// <summary>Maps gRPC health, reflection, the Prometheus scrape endpoint and an HTTP health page.</summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapHealthChecks("/healthz/ready", new HealthCheckOptions { Predicate = r => r.Tags.Contains(ReadyTag) });
        app.MapHealthChecks("/healthz/live", new HealthCheckOptions { Predicate = _ => false });
        return app;
    }

    /// <summary>Binds options from a configuration section, validates data annotations and
    /// <see cref="IValidatableObject"/>, and fails at start-up naming the section.</summary>
    public static OptionsBuilder<T> AddValidatedOptions<T>(this IServiceCollection services, IConfiguration configuration, string section)
        where T : class
    {
        return services.AddOptions<T>()
            .Bind(configuration.GetSection(section))
            .ValidateDataAnnotations()
            .ValidateOnStart();
    }
}

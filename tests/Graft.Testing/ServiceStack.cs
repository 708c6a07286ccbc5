using Graft.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace Graft.Testing;

/// <summary>How to start a <see cref="ServiceStack"/>.</summary>
public sealed record ServiceStackOptions
{
    /// <summary>Admin token given to the gateway (null: none, admin calls then need <see cref="AllowUnauthenticatedAdmin"/>).</summary>
    public string? AdminToken { get; init; } = "test-admin-" + Guid.NewGuid().ToString("N");

    /// <summary>Predict token given to the gateway (null: predict calls are open).</summary>
    public string? PredictToken { get; init; }

    public bool AllowUnauthenticatedAdmin { get; init; }

    /// <summary>Extra environment per service, e.g. <c>Graft__Gateway__BreakerBreakDuration</c>.</summary>
    public IReadOnlyDictionary<string, string> BackboneEnvironment { get; init; } = new Dictionary<string, string>();

    public IReadOnlyDictionary<string, string> HeadsEnvironment { get; init; } = new Dictionary<string, string>();

    public IReadOnlyDictionary<string, string> GatewayEnvironment { get; init; } = new Dictionary<string, string>();

    /// <summary>How long each service may take to become ready (the backbone loads and warms its model).</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(4);
}

/// <summary>BackboneService, HeadService and Gateway as three separate processes on free loopback ports, with a temporary
/// head registry, tokens passed through the environment, typed clients, metrics scraping and kill/restart of any one.
/// Disposing kills every process and deletes the registry; a failed start leaves nothing running.</summary>
public sealed class ServiceStack : IAsyncDisposable
{
    private readonly List<ServiceProcess> _processes = [];

    private ServiceStack(ServiceStackOptions options, string registry)
    {
        Options = options;
        RegistryDirectory = registry;
    }

    public ServiceStackOptions Options { get; }

    /// <summary>The head registry folder HeadService writes (deleted on dispose).</summary>
    public string RegistryDirectory { get; }

    public ServiceProcess Backbone { get; private set; } = null!;

    public ServiceProcess Heads { get; private set; } = null!;

    public ServiceProcess Gateway { get; private set; } = null!;

    /// <summary>The public API client, without credentials; pass <see cref="AdminHeaders"/> or <see cref="Bearer"/> per call.</summary>
    public V1.Gateway.GatewayClient GatewayClient => new(Gateway.Channel);

    public Backbone.BackboneClient BackboneClient => new(Backbone.Channel);

    public Heads.HeadsClient HeadsClient => new(Heads.Channel);

    /// <summary>Headers carrying the admin token.</summary>
    public Metadata AdminHeaders => Bearer(Options.AdminToken ?? throw new InvalidOperationException("This stack has no admin token."));

    /// <summary>Headers carrying the predict token when one is configured, else none.</summary>
    public Metadata PredictHeaders => Options.PredictToken is { } t ? Bearer(t) : [];

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    /// <summary>Starts the backbone and the heads (in parallel), then the gateway pointed at them.</summary>
    public static async Task<ServiceStack> StartAsync(ServiceStackOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ServiceStackOptions();
        var registry = Directory.CreateTempSubdirectory("graft-e2e-registry-").FullName;
        var stack = new ServiceStack(options, registry);
        try
        {
            stack.Backbone = stack.Add(GraftService.Backbone, new Dictionary<string, string>
            {
                ["Graft__Backbone__Device"] = "cpu",
            }, options.BackboneEnvironment);
            stack.Heads = stack.Add(GraftService.Heads, new Dictionary<string, string>
            {
                ["Graft__Heads__RegistryPath"] = registry,
            }, options.HeadsEnvironment);

            var gatewayEnv = new Dictionary<string, string>
            {
                ["Graft__Gateway__BackboneAddress"] = stack.Backbone.GrpcAddress.ToString(),
                ["Graft__Gateway__HeadsAddress"] = stack.Heads.GrpcAddress.ToString(),
                ["Graft__Gateway__AllowUnauthenticatedAdmin"] = options.AllowUnauthenticatedAdmin ? "true" : "false",
            };
            if (options.AdminToken is { } admin)
            {
                gatewayEnv["Graft__Gateway__AdminToken"] = admin;
            }
            if (options.PredictToken is { } predict)
            {
                gatewayEnv["Graft__Gateway__PredictToken"] = predict;
            }
            stack.Gateway = stack.Add(GraftService.Gateway, gatewayEnv, options.GatewayEnvironment);

            await Task.WhenAll(
                stack.Backbone.StartAsync(options.ReadyTimeout, cancellationToken),
                stack.Heads.StartAsync(options.ReadyTimeout, cancellationToken));
            await stack.Gateway.StartAsync(options.ReadyTimeout, cancellationToken);
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    public ServiceProcess this[GraftService service] => service switch
    {
        GraftService.Backbone => Backbone,
        GraftService.Heads => Heads,
        _ => Gateway,
    };

    /// <summary>The last lines of every service's output, for a failure message.</summary>
    public string Diagnostics(int lastLines = 60) =>
        string.Join("\n", _processes.Select(p => $"----- {p.Service} (grpc {p.GrpcPort}, http {p.HttpPort}) -----\n{p.OutputText(lastLines)}"));

    public async ValueTask DisposeAsync()
    {
        // Gateway first, so it never logs the others' shutdown as failures.
        foreach (var process in Enumerable.Reverse(_processes))
        {
            await process.DisposeAsync();
        }
        try
        {
            Directory.Delete(RegistryDirectory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp folder left behind harms nobody.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private ServiceProcess Add(GraftService service, Dictionary<string, string> environment, IReadOnlyDictionary<string, string> extra)
    {
        foreach (var (k, v) in extra)
        {
            environment[k] = v;
        }
        environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var process = new ServiceProcess(service, FreePorts.Next(), FreePorts.Next(), environment);
        _processes.Add(process);
        return process;
    }
}

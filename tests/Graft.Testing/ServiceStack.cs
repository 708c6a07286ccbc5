using Graft.Launcher;
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

    /// <summary>An existing head registry to serve (kept on dispose), e.g. to restart a stack on another backbone over the
    /// same heads. Null: a new temporary one, deleted on dispose.</summary>
    public string? RegistryDirectory { get; init; }

    /// <summary>An existing training-set store for the gateway (kept on dispose). Null: a new temporary one, deleted on dispose.</summary>
    public string? DatasetsDirectory { get; init; }

    /// <summary>How long each service may take to become ready (the backbone loads and warms its model).</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(4);
}

/// <summary>BackboneService, HeadService and Gateway as three separate processes on free loopback ports (the shared
/// launcher's <see cref="ServiceGroup"/>), with a temporary head registry, tokens passed through the environment, typed
/// clients, metrics scraping and kill/restart of any one. Disposing kills every process and deletes the registry; a
/// failed start leaves nothing running.</summary>
public sealed class ServiceStack : IAsyncDisposable
{
    private readonly ServiceGroup _group;

    private ServiceStack(ServiceStackOptions options, string registry, string datasets, ServiceGroup group)
    {
        Options = options;
        RegistryDirectory = registry;
        DatasetsDirectory = datasets;
        _group = group;
    }

    public ServiceStackOptions Options { get; }

    /// <summary>The head registry folder HeadService writes (deleted on dispose).</summary>
    public string RegistryDirectory { get; }

    /// <summary>The gateway's training-set store (deleted on dispose unless the options named it).</summary>
    public string DatasetsDirectory { get; }

    public ServiceProcess Backbone => _group.Backbone;

    public ServiceProcess Heads => _group.Heads;

    public ServiceProcess Gateway => _group.Gateway;

    /// <summary>The public API client, without credentials; pass <see cref="AdminHeaders"/> or <see cref="Bearer"/> per call.</summary>
    public V1.Gateway.GatewayClient GatewayClient => new(Gateway.Channel);

    public Backbone.BackboneClient BackboneClient => new(Backbone.Channel);

    public Heads.HeadsClient HeadsClient => new(Heads.Channel);

    /// <summary>Headers carrying the admin token.</summary>
    public Metadata AdminHeaders => Bearer(Options.AdminToken ?? throw new InvalidOperationException("This stack has no admin token."));

    /// <summary>Headers carrying the predict token when one is configured, else none.</summary>
    public Metadata PredictHeaders => Options.PredictToken is { } t ? Bearer(t) : [];

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    /// <summary>Starts the three services and waits until each is ready.</summary>
    public static async Task<ServiceStack> StartAsync(ServiceStackOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ServiceStackOptions();
        var registry = options.RegistryDirectory ?? Directory.CreateTempSubdirectory("graft-e2e-registry-").FullName;
        var datasets = options.DatasetsDirectory ?? Directory.CreateTempSubdirectory("graft-e2e-datasets-").FullName;
        var gatewayEnv = new Dictionary<string, string>
        {
            ["Graft__Gateway__AllowUnauthenticatedAdmin"] = options.AllowUnauthenticatedAdmin ? "true" : "false",
            ["Graft__Gateway__Datasets__Path"] = datasets,
        };
        if (options.AdminToken is { } admin)
        {
            gatewayEnv["Graft__Gateway__AdminToken"] = admin;
        }
        if (options.PredictToken is { } predict)
        {
            gatewayEnv["Graft__Gateway__PredictToken"] = predict;
        }
        var launch = new StackLaunch(PortPlan.Free(), RepositoryLayout.ServiceDll)
        {
            Environment = new Dictionary<GraftService, IReadOnlyDictionary<string, string>>
            {
                [GraftService.Backbone] = Merge(new() { ["Graft__Backbone__Device"] = "cpu" }, options.BackboneEnvironment),
                [GraftService.Heads] = Merge(new() { ["Graft__Heads__RegistryPath"] = registry }, options.HeadsEnvironment),
                [GraftService.Gateway] = Merge(gatewayEnv, options.GatewayEnvironment),
            },
        };
        try
        {
            var group = await ServiceGroup.StartAsync(launch, options.ReadyTimeout, cancellationToken: cancellationToken);
            return new ServiceStack(options, registry, datasets, group);
        }
        catch
        {
            DeleteOwnFolders(options, registry, datasets);
            throw;
        }
    }

    public ServiceProcess this[GraftService service] => _group[service];

    /// <summary>The last lines of every service's output, for a failure message.</summary>
    public string Diagnostics(int lastLines = 60) =>
        string.Join("\n", _group.Services.Select(p => $"----- {p.Service} (grpc {p.GrpcPort}, http {p.HttpPort}) -----\n{p.OutputText(lastLines)}"));

    public async ValueTask DisposeAsync()
    {
        await _group.DisposeAsync();
        DeleteOwnFolders(Options, RegistryDirectory, DatasetsDirectory);
    }

    private static void DeleteOwnFolders(ServiceStackOptions options, string registry, string datasets)
    {
        if (options.RegistryDirectory is null)
        {
            DeleteRegistry(registry);
        }
        if (options.DatasetsDirectory is null)
        {
            DeleteRegistry(datasets);
        }
    }

    private static IReadOnlyDictionary<string, string> Merge(Dictionary<string, string> environment, IReadOnlyDictionary<string, string> extra)
    {
        foreach (var (k, v) in extra)
        {
            environment[k] = v;
        }
        return TestProcesses.WithDefaults(environment);
    }

    private static void DeleteRegistry(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp folder left behind harms nobody.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

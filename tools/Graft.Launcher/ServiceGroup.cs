namespace Graft.Launcher;

/// <summary>How to start the three services together.</summary>
public sealed record StackLaunch(PortPlan Ports, Func<GraftService, string> Dll)
{
    /// <summary>Environment per service (the Gateway's downstream addresses are added from <see cref="Ports"/>).</summary>
    public IReadOnlyDictionary<GraftService, IReadOnlyDictionary<string, string>> Environment { get; init; } =
        new Dictionary<GraftService, IReadOnlyDictionary<string, string>>();

    /// <summary>When set, each service logs to <c>&lt;dir&gt;/{backbone,heads,gateway}.log</c>.</summary>
    public string? LogDirectory { get; init; }
}

/// <summary>BackboneService, HeadService and Gateway as child processes (<see cref="ServiceProcess"/>), started
/// together and stopped Gateway first, so the Gateway never logs the others' shutdown as failures. A failed start
/// leaves nothing running.</summary>
public sealed class ServiceGroup : IAsyncDisposable
{
    private ServiceGroup(ServiceProcess backbone, ServiceProcess heads, ServiceProcess gateway)
    {
        Backbone = backbone;
        Heads = heads;
        Gateway = gateway;
    }

    public ServiceProcess Backbone { get; }

    public ServiceProcess Heads { get; }

    public ServiceProcess Gateway { get; }

    /// <summary>In start order: Backbone, Heads, Gateway.</summary>
    public IReadOnlyList<ServiceProcess> Services => [Backbone, Heads, Gateway];

    public ServiceProcess this[GraftService service] => service switch
    {
        GraftService.Backbone => Backbone,
        GraftService.Heads => Heads,
        _ => Gateway,
    };

    /// <summary>Grace each service gets on dispose before it is killed (zero: killed at once, as a crash would).</summary>
    public TimeSpan StopGrace { get; set; } = TimeSpan.Zero;

    /// <summary>Creates the three processes without starting them.</summary>
    public static ServiceGroup Create(StackLaunch launch)
    {
        ServiceProcess Make(GraftService service, IReadOnlyDictionary<string, string>? extra = null)
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in extra ?? new Dictionary<string, string>()) env[k] = v;
            if (launch.Environment.TryGetValue(service, out var given))
            {
                foreach (var (k, v) in given) env[k] = v;
            }
            return new ServiceProcess(new ServiceLaunch(service, launch.Dll(service), launch.Ports[service])
            {
                Environment = env,
                LogFile = launch.LogDirectory is { } dir ? Path.Combine(dir, service.ToString().ToLowerInvariant() + ".log") : null,
            });
        }

        return new ServiceGroup(
            Make(GraftService.Backbone),
            Make(GraftService.Heads),
            Make(GraftService.Gateway, new Dictionary<string, string>
            {
                ["Graft__Gateway__BackboneAddress"] = launch.Ports.Backbone.GrpcAddress.ToString(),
                ["Graft__Gateway__HeadsAddress"] = launch.Ports.Heads.GrpcAddress.ToString(),
            }));
    }

    /// <summary>Starts the three services and returns once each reports SERVING; on failure stops them all and rethrows.</summary>
    public static async Task<ServiceGroup> StartAsync(StackLaunch launch, TimeSpan readyTimeout, Action<ServiceProcess>? serving = null, CancellationToken cancellationToken = default)
    {
        var group = Create(launch);
        try
        {
            foreach (var service in group.Services) service.Start();
            await Task.WhenAll(group.Services.Select(async s =>
            {
                await s.WaitServingAsync(readyTimeout, cancellationToken);
                serving?.Invoke(s);
            }));
            return group;
        }
        catch
        {
            await group.DisposeAsync();
            throw;
        }
    }

    /// <summary>Completes when a service exits without being asked to (returned), or when <paramref name="cancellationToken"/>
    /// is cancelled (null).</summary>
    public async Task<ServiceProcess?> WaitForUnexpectedExitAsync(CancellationToken cancellationToken)
    {
        var exited = new TaskCompletionSource<ServiceProcess>(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlers = Services.Select(s => (s, (Action<ServiceExit>)(e => { if (!e.Requested) exited.TrySetResult(s); }))).ToList();
        foreach (var (s, h) in handlers) s.Exited += h;
        try
        {
            if (Services.FirstOrDefault(s => !s.IsRunning) is { } already) return already;
            return await exited.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        finally
        {
            foreach (var (s, h) in handlers) s.Exited -= h;
        }
    }

    /// <summary>Stops the Gateway, then HeadService, then BackboneService, each with <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        foreach (var service in Services.Reverse())
        {
            await service.StopAsync(grace);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(StopGrace);
        foreach (var service in Services.Reverse())
        {
            await service.DisposeAsync();
        }
    }
}

using System.Security.Cryptography;
using Graft.Launcher;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace Graft.Cli.Stack;

/// <summary>How to start a local stack.</summary>
public sealed class StackSettings
{
    public int BasePort { get; init; } = PortPlan.DefaultBase;

    /// <summary>Registry (heads/), training sets (datasets/), logs (logs/), the admin token file and the state file (stack.json) live here.</summary>
    public string DataDirectory { get; init; } = "data";

    /// <summary>Where the service logs go; null: <c>&lt;data-dir&gt;/logs</c>.</summary>
    public string? LogDirectory { get; init; }

    /// <summary>Bound of everything in the log folder together (each service gets a third: its .log and .log.1).</summary>
    public long LogMaxBytes { get; init; } = DefaultLogMaxBytes;

    public const long DefaultLogMaxBytes = 96L * 1024 * 1024;

    /// <summary>How a service that exits on its own is restarted, and when that is a crash loop.</summary>
    public RestartPolicy Restarts { get; init; } = new();

    /// <summary>Admin token to give the Gateway; null generates a random one.</summary>
    public string? AdminToken { get; init; }

    /// <summary>How long to wait for every service to report SERVING.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(3);
}

/// <summary>BackboneService, HeadService and Gateway as child processes of this CLI on the ports of
/// <c>--base-port</c>, started by the shared launcher (<see cref="ServiceGroup"/>) and kept running by its
/// <see cref="Supervisor"/> (restart with backoff; a crash loop ends the stack through <see cref="Failure"/>).
/// The stack's state is published in <c>stack.json</c> for <c>graft status</c>. Disposing stops the services
/// (SIGTERM, then kill after <see cref="StopGrace"/>, Gateway first); the kernel stops them if the CLI dies.</summary>
public sealed class LocalStack : IAsyncDisposable
{
    /// <summary>How long each service gets to stop after SIGTERM before it is killed. A service manager's stop
    /// timeout must exceed three of these (the services stop one after another).</summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(15);

    private readonly ServiceGroup _group;
    private readonly Supervisor _supervisor;
    private readonly Lock _stateGate = new();
    private readonly Action<string> _warn;

    private LocalStack(PortPlan ports, string dataDirectory, string adminToken, string tokenFile, ServiceGroup group, Supervisor supervisor, Action<string> warn)
    {
        Ports = ports;
        DataDirectory = dataDirectory;
        AdminToken = adminToken;
        TokenFile = tokenFile;
        StateFile = StackStateFile.PathIn(dataDirectory);
        StartedAt = DateTimeOffset.UtcNow;
        _group = group;
        _group.StopGrace = StopGrace;
        _supervisor = supervisor;
        _warn = warn;
        _supervisor.Changed += PublishState;
    }

    /// <summary>Where the stack publishes its state for <c>graft status</c>.</summary>
    public string StateFile { get; }

    public DateTimeOffset StartedAt { get; }

    /// <summary>Where the service logs are written.</summary>
    public string LogDirectory { get; private init; } = "";

    /// <summary>Completes with a message when a service is in a crash loop and the stack gave up on it.</summary>
    public Task<string> Failure => _supervisor.Failure;

    public PortPlan Ports { get; }

    public string DataDirectory { get; }

    public string AdminToken { get; }

    public string TokenFile { get; }

    public Uri GatewayAddress => Ports.Gateway.GrpcAddress;

    /// <summary>The gateway's HTTP/1.1 port: the studio, REST/JSON, OpenAPI, Open Inference Protocol, /metrics.</summary>
    public Uri GatewayHttpAddress => Ports.Gateway.HttpAddress;

    public IReadOnlyList<ServiceProcess> Services => _group.Services;

    /// <summary>Where a service writes its log.</summary>
    public static string LogPath(ServiceProcess service) => service.Launch.LogFile ?? "(no log file)";

    /// <summary>Starts the three services and returns once each reports SERVING on gRPC health (a service that exits
    /// while starting is restarted like any other, up to the crash-loop limit).</summary>
    public static async Task<LocalStack> StartAsync(StackSettings settings, Action<string> status, Action<string> warn, CancellationToken ct)
    {
        var ports = PortPlan.FromBase(settings.BasePort);
        await EnsurePortsFreeAsync(ports, ct);
        var dlls = GraftServices.All.ToDictionary(s => s, s => ServiceLocator.FindServiceDll(s.AssemblyName(), s.Folder()));

        var data = Path.GetFullPath(settings.DataDirectory);
        var logs = Path.GetFullPath(settings.LogDirectory ?? Path.Combine(data, "logs"));
        Directory.CreateDirectory(Path.Combine(data, "heads"));
        Directory.CreateDirectory(logs);
        var token = settings.AdminToken ?? RandomNumberGenerator.GetHexString(48, lowercase: true);
        var tokenFile = Path.Combine(data, "admin-token");
        WriteSecret(tokenFile, token);

        var group = ServiceGroup.Create(new StackLaunch(ports, s => dlls[s])
        {
            LogDirectory = logs,
            LogMaxBytes = Math.Max(2048, settings.LogMaxBytes / GraftServices.All.Count),
            Environment = new Dictionary<GraftService, IReadOnlyDictionary<string, string>>
            {
                // Quantized backbones (resnet18-int8) are cached with the stack's data, unless the user chose a place.
                [GraftService.Backbone] = Environment.GetEnvironmentVariable("Graft__Backbone__QuantizedCacheDirectory") is { Length: > 0 }
                    ? new Dictionary<string, string>()
                    : new Dictionary<string, string> { ["Graft__Backbone__QuantizedCacheDirectory"] = Path.Combine(data, "backbone", "quantized") },
                [GraftService.Heads] = new Dictionary<string, string> { ["Graft__Heads__RegistryPath"] = Path.Combine(data, "heads") },
                // Training sets sit beside the registry, on the same disk (RetrainHead reads them back).
                [GraftService.Gateway] = Environment.GetEnvironmentVariable("Graft__Gateway__Datasets__Path") is { Length: > 0 }
                    ? new Dictionary<string, string> { ["Graft__Gateway__AdminToken"] = token }
                    : new Dictionary<string, string> { ["Graft__Gateway__AdminToken"] = token, ["Graft__Gateway__Datasets__Path"] = Path.Combine(data, "datasets") },
            },
        });
        var supervisor = new Supervisor(group.Services, settings.Restarts, status, warn);
        var stack = new LocalStack(ports, data, token, tokenFile, group, supervisor, warn) { LogDirectory = logs };
        try
        {
            supervisor.Start();
            status($"Started {string.Join(", ", group.Services.Select(s => $"{s.Service} (pid {s.ProcessId})"))}; waiting for them to report SERVING (logs in {logs})");
            foreach (var s in supervisor.Services)
                _ = s.FirstServed.ContinueWith(_ => status($"{s.Process.Service} is SERVING on {s.Process.GrpcAddress}"), TaskContinuationOptions.OnlyOnRanToCompletion);
            var served = supervisor.AllServedAsync();
            var finished = await Task.WhenAny(served, supervisor.Failure, Task.Delay(settings.StartTimeout, ct));
            ct.ThrowIfCancellationRequested();
            if (finished == supervisor.Failure) throw new CliException(await supervisor.Failure, ExitCodes.Unreachable);
            if (finished != served)
            {
                var late = supervisor.Services.First(s => s.State != ServiceState.Serving);
                throw new CliException(
                    $"{late.Process.Service} did not report SERVING within {settings.StartTimeout.TotalSeconds:0} s ({late.State.ToString().ToLowerInvariant()}). " +
                    $"See {LogPath(late.Process)}; on a slow machine pass a larger --timeout. Last lines:\n{Tail(late.Process)}",
                    ExitCodes.Unreachable);
            }
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>The last lines a service wrote, to show why it stopped.</summary>
    public static string Tail(ServiceProcess service, int lines = 15) => Supervisor.Tail(service, lines);

    /// <summary>Each service with its state, uptime and restarts.</summary>
    public IReadOnlyList<SupervisedService> Supervised => _supervisor.Services;

    /// <summary>Stops supervising, then stops the Gateway first and the services behind it: SIGTERM, up to
    /// <see cref="StopGrace"/> each, then kill.</summary>
    public async ValueTask DisposeAsync()
    {
        _supervisor.Stop();
        await _group.DisposeAsync();
        try
        {
            File.Delete(StateFile);
        }
        catch (IOException)
        {
            // A stale file is recognised by its dead pid.
        }
    }

    /// <summary>Writes <c>stack.json</c> (atomically) for <c>graft status</c>.</summary>
    private void PublishState()
    {
        lock (_stateGate)
        {
            try
            {
                StackStateFile.Write(StateFile, new StackState
                {
                    Pid = Environment.ProcessId,
                    StartedAt = StartedAt,
                    Gateway = GatewayAddress.ToString(),
                    BasePort = Ports.Gateway.Grpc,
                    Services = _supervisor.Services.Select(s => new ServiceStateEntry
                    {
                        Name = s.Process.Service.ToString(),
                        State = s.State,
                        Pid = s.Process.ProcessId,
                        StartedAt = s.StartedAt,
                        Restarts = s.Restarts,
                        LastExitCode = s.LastExitCode,
                        Grpc = s.Process.GrpcAddress.ToString(),
                        Http = s.Process.HttpAddress.ToString(),
                        Log = LogPath(s.Process),
                    }).ToList(),
                });
            }
            catch (IOException e)
            {
                _warn($"Could not write {StateFile}: {e.Message}");
            }
        }
    }

    /// <summary>Fails with a clear message when any port of the stack is taken, naming the port and what to do.</summary>
    private static async Task EnsurePortsFreeAsync(PortPlan ports, CancellationToken ct)
    {
        foreach (var (port, use) in ports.All())
        {
            if (PortPlan.IsFree(port)) continue;
            var graftAlready = use == "Gateway gRPC" && await AnswersHealthAsync(new Uri($"http://{ServicePorts.Host}:{port}"), ct);
            var basePort = ports.Gateway.Grpc;
            throw new CliException(graftAlready
                ? $"A Graft Gateway already runs at http://{ServicePorts.Host}:{port}: use it as it is (other commands connect there by default), " +
                  $"stop it first, or start a second stack with --base-port (e.g. --base-port {basePort + 1000})."
                : $"Port {port} ({use}) is already in use on {ServicePorts.Host}: stop what holds it (`ss -ltnp 'sport = :{port}'` shows it) " +
                  $"or move the whole stack with --base-port (ports used: base, base+1, base+10, base+11, base+20, base+21).",
                ExitCodes.Unreachable);
        }
    }

    private static async Task<bool> AnswersHealthAsync(Uri address, CancellationToken ct)
    {
        try
        {
            using var channel = GrpcChannel.ForAddress(address);
            await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(3), cancellationToken: ct);
            return true;
        }
        catch (RpcException)
        {
            return false;
        }
    }

    /// <summary>Writes a file only its owner can read (0600), replacing any earlier one.</summary>
    private static void WriteSecret(string path, string secret)
    {
        File.Delete(path);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var writer = new StreamWriter(path, options);
        writer.Write(secret);
    }
}

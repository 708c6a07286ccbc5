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

    /// <summary>Registry (heads/), logs (logs/) and the admin token file live here.</summary>
    public string DataDirectory { get; init; } = "data";

    /// <summary>Admin token to give the Gateway; null generates a random one.</summary>
    public string? AdminToken { get; init; }

    /// <summary>How long to wait for every service to report SERVING.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(3);
}

/// <summary>BackboneService, HeadService and Gateway as child processes of this CLI on the ports of
/// <c>--base-port</c>, started by the shared launcher (<see cref="ServiceGroup"/>). Disposing stops them (SIGTERM,
/// then kill after 15 s, Gateway first); the kernel stops them if the CLI dies.</summary>
public sealed class LocalStack : IAsyncDisposable
{
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(15);
    private readonly ServiceGroup _group;

    private LocalStack(PortPlan ports, string dataDirectory, string adminToken, string tokenFile, ServiceGroup group)
    {
        Ports = ports;
        DataDirectory = dataDirectory;
        AdminToken = adminToken;
        TokenFile = tokenFile;
        _group = group;
        _group.StopGrace = StopGrace;
    }

    public PortPlan Ports { get; }

    public string DataDirectory { get; }

    public string AdminToken { get; }

    public string TokenFile { get; }

    public Uri GatewayAddress => Ports.Gateway.GrpcAddress;

    public IReadOnlyList<ServiceProcess> Services => _group.Services;

    /// <summary>Where a service writes its log.</summary>
    public static string LogPath(ServiceProcess service) => service.Launch.LogFile ?? "(no log file)";

    /// <summary>Starts the three services and returns once each reports SERVING on gRPC health.</summary>
    public static async Task<LocalStack> StartAsync(StackSettings settings, Action<string> status, CancellationToken ct)
    {
        var ports = PortPlan.FromBase(settings.BasePort);
        await EnsurePortsFreeAsync(ports, ct);
        var dlls = GraftServices.All.ToDictionary(s => s, s => ServiceLocator.FindServiceDll(s.AssemblyName(), s.Folder()));

        var data = Path.GetFullPath(settings.DataDirectory);
        var logs = Path.Combine(data, "logs");
        Directory.CreateDirectory(Path.Combine(data, "heads"));
        Directory.CreateDirectory(logs);
        var token = settings.AdminToken ?? RandomNumberGenerator.GetHexString(48, lowercase: true);
        var tokenFile = Path.Combine(data, "admin-token");
        WriteSecret(tokenFile, token);

        var group = ServiceGroup.Create(new StackLaunch(ports, s => dlls[s])
        {
            LogDirectory = logs,
            Environment = new Dictionary<GraftService, IReadOnlyDictionary<string, string>>
            {
                // Quantized backbones (resnet18-int8) are cached with the stack's data, unless the user chose a place.
                [GraftService.Backbone] = Environment.GetEnvironmentVariable("Graft__Backbone__QuantizedCacheDirectory") is { Length: > 0 }
                    ? new Dictionary<string, string>()
                    : new Dictionary<string, string> { ["Graft__Backbone__QuantizedCacheDirectory"] = Path.Combine(data, "backbone", "quantized") },
                [GraftService.Heads] = new Dictionary<string, string> { ["Graft__Heads__RegistryPath"] = Path.Combine(data, "heads") },
                [GraftService.Gateway] = new Dictionary<string, string> { ["Graft__Gateway__AdminToken"] = token },
            },
        });
        var stack = new LocalStack(ports, data, token, tokenFile, group);
        try
        {
            foreach (var service in group.Services) service.Start();
            status($"Started {string.Join(", ", group.Services.Select(s => $"{s.Service} (pid {s.ProcessId})"))}; waiting for them to report SERVING (logs in {logs})");
            await Task.WhenAll(group.Services.Select(async s =>
            {
                try
                {
                    await s.WaitServingAsync(settings.StartTimeout, ct);
                }
                catch (ServiceStartException e)
                {
                    throw new CliException(
                        $"{e.Message.Split('\n')[0]} See {LogPath(s)}{(s.IsRunning ? "; on a slow machine pass a larger --timeout" : "")}. Last lines:\n{Tail(s)}",
                        ExitCodes.Unreachable);
                }
                status($"{s.Service} is SERVING on {s.GrpcAddress}");
            }));
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>Completes when a service exits on its own (returned), or when <paramref name="ct"/> is cancelled (null).</summary>
    public Task<ServiceProcess?> WaitForUnexpectedExitAsync(CancellationToken ct) => _group.WaitForUnexpectedExitAsync(ct);

    /// <summary>The last lines a service wrote, to show why it stopped.</summary>
    public static string Tail(ServiceProcess service, int lines = 15)
    {
        try
        {
            using var stream = new FileStream(LogPath(service), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            var all = reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            return string.Join('\n', all.TakeLast(lines));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }

    /// <summary>Stops the Gateway first, then the services behind it: SIGTERM, up to 15 s each, then kill.</summary>
    public ValueTask DisposeAsync() => _group.DisposeAsync();

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

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace Graft.Cli.Stack;

/// <summary>Where a local stack listens. Each service has a gRPC port and, one above it, an HTTP port
/// for <c>/metrics</c> and <c>/healthz/*</c>: Gateway base, Backbone base+10, Heads base+20.</summary>
public sealed record StackPorts(int Base)
{
    public const int DefaultBase = 5100;

    public int Gateway => Base;
    public int Backbone => Base + 10;
    public int Heads => Base + 20;

    /// <summary>Every port the stack binds, with what binds it.</summary>
    public IEnumerable<(int Port, string Use)> All()
    {
        yield return (Gateway, "Gateway gRPC");
        yield return (Gateway + 1, "Gateway HTTP");
        yield return (Backbone, "Backbone gRPC");
        yield return (Backbone + 1, "Backbone HTTP");
        yield return (Heads, "Heads gRPC");
        yield return (Heads + 1, "Heads HTTP");
    }
}

/// <summary>How to start a local stack.</summary>
public sealed class StackSettings
{
    public int BasePort { get; init; } = StackPorts.DefaultBase;

    /// <summary>Registry (heads/), logs (logs/), the admin token file and the state file (stack.json) live here.</summary>
    public string DataDirectory { get; init; } = "data";

    /// <summary>Admin token to give the Gateway; null generates a random one.</summary>
    public string? AdminToken { get; init; }

    /// <summary>How long to wait for every service to report SERVING.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(3);

    /// <summary>Where the service logs go; null: <c>&lt;data-dir&gt;/logs</c>.</summary>
    public string? LogDirectory { get; init; }

    /// <summary>Bound of everything under logs/ together (each service gets a third: its .log and .log.1).</summary>
    public long LogMaxBytes { get; init; } = DefaultLogMaxBytes;

    public const long DefaultLogMaxBytes = 96L * 1024 * 1024;

    /// <summary>When a service exits on its own it is restarted; this many early exits in a row is a crash loop.</summary>
    public RestartPolicy Restarts { get; init; } = new();
}

/// <summary>How the supervisor restarts a service that exits on its own.</summary>
public sealed record RestartPolicy
{
    /// <summary>Restarts tried after early exits in a row before the stack is stopped as a crash loop.</summary>
    public int MaxRestarts { get; init; } = 5;

    /// <summary>Delay before the first restart; doubled after each further early exit, up to <see cref="MaxDelay"/>.</summary>
    public TimeSpan FirstDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A run shorter than this is an early exit (counts towards a crash loop); a longer one resets the count.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Backoff before restart number <paramref name="earlyExits"/> (1-based) of a series of early exits.</summary>
    public TimeSpan DelayFor(int earlyExits)
    {
        var factor = Math.Pow(2, Math.Min(30, Math.Max(0, earlyExits - 1)));
        return TimeSpan.FromTicks((long)Math.Min(MaxDelay.Ticks, FirstDelay.Ticks * factor));
    }
}

/// <summary>What a supervised service is doing.</summary>
public enum ServiceState
{
    Starting,
    Serving,
    Restarting,
    Stopped,
    Failed,
}

/// <summary>One service of the stack. Its process changes when the supervisor restarts it.</summary>
public sealed class ServiceProcess
{
    internal ServiceProcess(string name, string dll, Uri grpc, Uri http, RotatingLogFile log, IReadOnlyDictionary<string, string> env)
    {
        Name = name;
        Dll = dll;
        Grpc = grpc;
        Http = http;
        Log = log;
        Environment = env;
    }

    public string Name { get; }

    public string Dll { get; }

    public Uri Grpc { get; }

    public Uri Http { get; }

    public string LogPath => Log.Path;

    internal RotatingLogFile Log { get; }

    internal IReadOnlyDictionary<string, string> Environment { get; }

    /// <summary>The current process (the latest restart's).</summary>
    public Process Process { get; internal set; } = null!;

    public ServiceState State { get; internal set; } = ServiceState.Starting;

    public DateTimeOffset StartedAt { get; internal set; }

    /// <summary>Restarts since `graft up` started it.</summary>
    public int Restarts { get; internal set; }

    public int? LastExitCode { get; internal set; }
}

/// <summary>BackboneService, HeadService and Gateway as supervised child processes of this CLI, on loopback ports.
/// A service that exits on its own is restarted with exponential backoff; a crash loop ends the stack
/// (<see cref="Failure"/>). The stack's state is published in <c>stack.json</c> for <c>graft status</c>.
/// Disposing stops the services (SIGTERM, then kill); they are also killed if the CLI dies.</summary>
public sealed partial class LocalStack : IAsyncDisposable
{
    private const string Host = "127.0.0.1";
    private readonly List<ServiceProcess> _services = [];
    private readonly BlockingCollection<Action> _forkQueue = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource<string> _failure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _supervisors = [];
    private readonly Lock _stateGate = new();
    private readonly RestartPolicy _policy;
    private readonly Action<string> _status;
    private readonly Action<string> _warn;
    private int _disposed;

    private LocalStack(StackPorts ports, string dataDirectory, string adminToken, string tokenFile, RestartPolicy policy, Action<string> status, Action<string> warn)
    {
        Ports = ports;
        DataDirectory = dataDirectory;
        AdminToken = adminToken;
        TokenFile = tokenFile;
        StateFile = StackStateFile.PathIn(dataDirectory);
        StartedAt = DateTimeOffset.UtcNow;
        _policy = policy;
        _status = status;
        _warn = warn;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        // Children are forked from one dedicated thread that lives as long as the stack: Linux sends the
        // parent-death signal when the *thread* that forked a child ends, so a pool thread would not do.
        new Thread(() => { foreach (var fork in _forkQueue.GetConsumingEnumerable()) fork(); }) { IsBackground = true, Name = "graft-stack" }.Start();
    }

    public StackPorts Ports { get; }

    public string DataDirectory { get; }

    public string AdminToken { get; }

    public string TokenFile { get; }

    /// <summary>Where the service logs are written.</summary>
    public string LogDirectory { get; private init; } = "";

    /// <summary>Where the stack publishes its state for <c>graft status</c>.</summary>
    public string StateFile { get; }

    public DateTimeOffset StartedAt { get; }

    public Uri GatewayAddress => new($"http://{Host}:{Ports.Gateway}");

    public IReadOnlyList<ServiceProcess> Services => _services;

    /// <summary>Completes with a message when a service is in a crash loop and the stack gave up on it.</summary>
    public Task<string> Failure => _failure.Task;

    /// <summary>Starts the three services and returns once each reports SERVING on gRPC health
    /// (a service that exits while starting is restarted like any other, up to the crash-loop limit).</summary>
    public static async Task<LocalStack> StartAsync(StackSettings settings, Action<string> status, Action<string> warn, CancellationToken ct)
    {
        var ports = new StackPorts(settings.BasePort);
        await EnsurePortsFreeAsync(ports, ct);
        var backboneDll = ServiceLocator.FindServiceDll("Graft.BackboneService", "BackboneService");
        var headsDll = ServiceLocator.FindServiceDll("Graft.HeadService", "HeadService");
        var gatewayDll = ServiceLocator.FindServiceDll("Graft.Gateway", "Gateway");

        var data = Path.GetFullPath(settings.DataDirectory);
        var logs = Path.GetFullPath(settings.LogDirectory ?? Path.Combine(data, "logs"));
        Directory.CreateDirectory(Path.Combine(data, "heads"));
        Directory.CreateDirectory(logs);
        var token = settings.AdminToken ?? RandomNumberGenerator.GetHexString(48, lowercase: true);
        var tokenFile = Path.Combine(data, "admin-token");
        WriteSecret(tokenFile, token);

        var stack = new LocalStack(ports, data, token, tokenFile, settings.Restarts, status, warn) { LogDirectory = logs };
        try
        {
            string Url(int port) => $"http://{Host}:{port}";
            var specs = new List<(string Name, string Dll, int Port, Dictionary<string, string> Env)>
            {
                ("Backbone", backboneDll, ports.Backbone, new()),
                ("Heads", headsDll, ports.Heads, new() { ["Graft__Heads__RegistryPath"] = Path.Combine(data, "heads") }),
                ("Gateway", gatewayDll, ports.Gateway, new()
                {
                    ["Graft__Gateway__AdminToken"] = token,
                    ["Graft__Gateway__BackboneAddress"] = Url(ports.Backbone),
                    ["Graft__Gateway__HeadsAddress"] = Url(ports.Heads),
                }),
            };
            var perService = Math.Max(2048, settings.LogMaxBytes / specs.Count);
            foreach (var spec in specs)
            {
                var log = new RotatingLogFile(Path.Combine(logs, spec.Name.ToLowerInvariant() + ".log"), perService);
                stack._services.Add(new ServiceProcess(spec.Name, spec.Dll, new Uri(Url(spec.Port)), new Uri(Url(spec.Port + 1)), log, spec.Env));
            }
            foreach (var service in stack._services) await stack.LaunchAsync(service);
            foreach (var service in stack._services) stack._supervisors.Add(stack.SuperviseAsync(service));
            stack.PublishState();
            status($"Started {string.Join(", ", stack.Services.Select(s => $"{s.Name} (pid {s.Process.Id})"))}; waiting for them to report SERVING (logs in {logs})");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(settings.StartTimeout);
            var serving = Task.WhenAll(stack.Services.Select(s => stack.WaitServingAsync(s, settings.StartTimeout, timeout.Token, ct)));
            if (await Task.WhenAny(serving, stack.Failure) == stack.Failure)
                throw new CliException(await stack.Failure, ExitCodes.Unreachable);
            await serving;
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>The last lines a service wrote, to show why it stopped.</summary>
    public static string Tail(ServiceProcess service, int lines = 15) => RotatingLogFile.Tail(service.LogPath, lines);

    /// <summary>Stops supervising, then stops the Gateway first and the services behind it: SIGTERM, up to
    /// <see cref="StopGrace"/> each, then kill.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await _stopping.CancelAsync();
        foreach (var service in Enumerable.Reverse(_services))
        {
            var process = service.Process;
            if (process is null) continue;
            if (!process.HasExited)
            {
                _ = SysKill(process.Id, SigTerm);
                using var grace = new CancellationTokenSource(StopGrace);
                try
                {
                    await process.WaitForExitAsync(grace.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(CancellationToken.None);
                }
            }
            if (service.State != ServiceState.Failed) service.State = ServiceState.Stopped;
        }
        await Task.WhenAll(_supervisors);
        _forkQueue.CompleteAdding();
        foreach (var service in _services)
        {
            service.Process?.Dispose();
            service.Log.Dispose();
        }
        try
        {
            File.Delete(StateFile);
        }
        catch (IOException)
        {
            // A stale file is recognised by its dead pid.
        }
    }

    /// <summary>How long a service gets to stop after SIGTERM before it is killed. A service manager's stop
    /// timeout must exceed three of these (the services stop one after another).</summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(15);

    /// <summary>Waits for each exit of <paramref name="service"/> and restarts it with backoff, until the stack
    /// stops or the service exits early <see cref="RestartPolicy.MaxRestarts"/> + 1 times in a row.</summary>
    private async Task SuperviseAsync(ServiceProcess service)
    {
        var stop = _stopping.Token;
        var earlyExits = 0;
        try
        {
            while (true)
            {
                await service.Process.WaitForExitAsync(stop);
                // Ctrl-C in a terminal reaches the services too (same process group): give the CLI's own
                // handler a moment to begin the ordered stop before treating the exit as a crash.
                await Task.Delay(TimeSpan.FromMilliseconds(500), stop);
                var ran = DateTimeOffset.UtcNow - service.StartedAt;
                var exitCode = service.Process.ExitCode;
                service.LastExitCode = exitCode;
                earlyExits = ran < _policy.StableAfter ? earlyExits + 1 : 1;
                var tail = Tail(service, 10);
                if (earlyExits > _policy.MaxRestarts)
                {
                    service.State = ServiceState.Failed;
                    PublishState();
                    _failure.TrySetResult(
                        $"{service.Name} is in a crash loop: it exited {earlyExits} times in a row within {_policy.StableAfter.TotalSeconds:0} s of starting " +
                        $"(last exit code {exitCode}); stopping the stack. Fix the cause and run `graft up` again. Last lines of {service.LogPath}:\n{tail}");
                    return;
                }
                var delay = _policy.DelayFor(earlyExits);
                service.State = ServiceState.Restarting;
                PublishState();
                _warn($"{service.Name} (pid {service.Process.Id}) exited with code {exitCode} after {Format(ran)}; restarting in {Format(delay)} " +
                      $"(restart {service.Restarts + 1}; early exit {earlyExits} of at most {_policy.MaxRestarts + 1}). Last lines of {service.LogPath}:\n{tail}");
                service.Log.WriteLine($"---- graft up: {service.Name} exited with code {exitCode}; restarting in {Format(delay)} ----");
                await Task.Delay(delay, stop);
                service.Process.Dispose();
                await LaunchAsync(service);
                service.Restarts++;
                PublishState();
                _ = ReportServingAgainAsync(service, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The stack is stopping.
        }
        catch (Exception e)
        {
            _failure.TrySetResult($"Supervising {service.Name} failed: {e.Message}; stopping the stack.");
        }
    }

    private async Task ReportServingAgainAsync(ServiceProcess service, CancellationToken stop)
    {
        var process = service.Process;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
            timeout.CancelAfter(TimeSpan.FromMinutes(5));
            await WaitServingAsync(service, TimeSpan.FromMinutes(5), timeout.Token, stop, quiet: true);
            if (service.Process == process)
                _status($"{service.Name} is SERVING again (pid {process.Id}, {Format(DateTimeOffset.UtcNow - service.StartedAt)} after its restart)");
        }
        catch (Exception e) when (e is OperationCanceledException or CliException)
        {
            // Exited again (the supervisor reports it) or the stack is stopping.
        }
    }

    private static string Format(TimeSpan t) => t.TotalSeconds < 10 ? $"{t.TotalSeconds:0.0} s" : $"{t.TotalSeconds:0} s";

    /// <summary>Starts (or restarts) a service's process on the fork thread.</summary>
    private Task LaunchAsync(ServiceProcess service)
    {
        var launched = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _forkQueue.Add(() =>
        {
            try
            {
                service.Process = StartProcess(service);
                service.StartedAt = DateTimeOffset.UtcNow;
                service.State = ServiceState.Starting;
                launched.SetResult();
            }
            catch (Exception e)
            {
                launched.SetException(e);
            }
        });
        return launched.Task;
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
                    Pid = System.Environment.ProcessId,
                    StartedAt = StartedAt,
                    Gateway = GatewayAddress.ToString(),
                    BasePort = Ports.Base,
                    Services = _services.Select(s => new ServiceStateEntry
                    {
                        Name = s.Name,
                        State = s.State,
                        Pid = s.Process?.Id,
                        StartedAt = s.StartedAt,
                        Restarts = s.Restarts,
                        LastExitCode = s.LastExitCode,
                        Grpc = s.Grpc.ToString(),
                        Http = s.Http.ToString(),
                        Log = s.LogPath,
                    }).ToList(),
                });
            }
            catch (IOException e)
            {
                _warn($"Could not write {StateFile}: {e.Message}");
            }
        }
    }

    private void KillAll()
    {
        foreach (var service in _services)
        {
            try
            {
                if (service.Process is { HasExited: false } process) process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }
    }

    private static Process StartProcess(ServiceProcess service)
    {
        var info = new ProcessStartInfo
        {
            WorkingDirectory = Path.GetDirectoryName(service.Dll)!, // the service reads its appsettings.json from there
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        // setpriv --pdeathsig: the kernel signals the child if this CLI dies without stopping it (kill -9, crash).
        var executable = ServiceLocator.SelfContainedExecutable(service.Dll);
        var program = executable ?? ServiceLocator.DotnetHost();
        if (OperatingSystem.IsLinux() && File.Exists("/usr/bin/setpriv"))
        {
            info.FileName = "/usr/bin/setpriv";
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("TERM");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(program);
        }
        else
        {
            info.FileName = program;
        }
        if (executable is null) info.ArgumentList.Add(service.Dll);
        info.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url={service.Grpc}");
        info.ArgumentList.Add($"--Kestrel:Endpoints:Http:Url={service.Http}");
        foreach (var (key, value) in service.Environment) info.Environment[key] = value;

        var log = service.Log;
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.WriteLine(e.Data); };
        if (!process.Start()) throw new CliException($"Could not start {service.Name} ({service.Dll}).", ExitCodes.Unreachable);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Polls gRPC health until the service reports SERVING; its restarts in between are the supervisor's business.</summary>
    private async Task WaitServingAsync(ServiceProcess service, TimeSpan limit, CancellationToken timeout, CancellationToken user, bool quiet = false)
    {
        using var channel = GrpcChannel.ForAddress(service.Grpc, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2) },
        });
        var health = new Health.HealthClient(channel);
        var lastState = "not answering";
        while (true)
        {
            if (service.State == ServiceState.Failed) throw new CliException($"{service.Name} failed.", ExitCodes.Unreachable);
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest { Service = "" }, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: timeout);
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving && !service.Process.HasExited)
                {
                    service.State = ServiceState.Serving;
                    PublishState();
                    if (!quiet) _status($"{service.Name} is SERVING on {service.Grpc}");
                    return;
                }
                lastState = reply.Status.ToString();
            }
            catch (RpcException e) when (!timeout.IsCancellationRequested)
            {
                lastState = e.StatusCode == StatusCode.Unavailable ? "not answering" : e.Status.Detail;
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException && timeout.IsCancellationRequested)
            {
                user.ThrowIfCancellationRequested();
                throw new CliException(
                    $"{service.Name} did not report SERVING within {limit.TotalSeconds:0} s (last state: {lastState}). " +
                    $"See {service.LogPath}; on a slow machine pass a larger --timeout. Last lines:\n{Tail(service)}",
                    ExitCodes.Unreachable);
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(quiet ? 100 : 250), timeout);
            }
            catch (OperationCanceledException)
            {
                // Reported on the next pass.
            }
        }
    }

    /// <summary>Fails with a clear message when any port of the stack is taken, naming the port and what to do.</summary>
    private static async Task EnsurePortsFreeAsync(StackPorts ports, CancellationToken ct)
    {
        foreach (var (port, use) in ports.All())
        {
            if (IsFree(port)) continue;
            var graftAlready = use == "Gateway gRPC" && await AnswersHealthAsync(new Uri($"http://{Host}:{port}"), ct);
            throw new CliException(graftAlready
                ? $"A Graft Gateway already runs at http://{Host}:{port}: use it as it is (other commands connect there by default), " +
                  $"stop it first, or start a second stack with --base-port (e.g. --base-port {ports.Base + 1000})."
                : $"Port {port} ({use}) is already in use on {Host}: stop what holds it (`ss -ltnp 'sport = :{port}'` shows it) " +
                  $"or move the whole stack with --base-port (ports used: base, base+1, base+10, base+11, base+20, base+21).",
                ExitCodes.Unreachable);
        }
    }

    private static bool IsFree(int port)
    {
        try
        {
            // Same reuse rule as Kestrel, so connections of a stack that just stopped (TIME_WAIT) do not count.
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
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

    private const int SigTerm = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);
}

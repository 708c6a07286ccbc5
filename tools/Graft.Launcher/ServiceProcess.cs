using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace Graft.Launcher;

/// <summary>How a run of a service ended: which run (1 for the first start), and its exit code.</summary>
public sealed record ServiceExit(GraftService Service, int Run, int ExitCode, bool Requested);

/// <summary>One service as a child process (<c>dotnet Graft.X.dll</c>) on fixed loopback ports: start with
/// parent-death handling, wait for SERVING, output capture, graceful stop, kill and restart on the same ports.
/// <see cref="Exited"/> reports every end of a run, whether asked for or not: the seam a supervisor (restart with
/// backoff) builds on.</summary>
public sealed partial class ServiceProcess : IAsyncDisposable
{
    // Every live child, so a host that exits normally without disposing still takes them down.
    private static readonly ConcurrentDictionary<ServiceProcess, byte> Live = new();

    private readonly ConcurrentQueue<string> _output = new();
    private readonly object _gate = new();
    private Process? _process;
    private RotatingLogFile? _log;
    private GrpcChannel? _channel;
    private int _runs;
    private bool _stopRequested;

    static ServiceProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var p in Live.Keys)
            {
                p.Kill();
            }
        };
    }

    public ServiceProcess(ServiceLaunch launch)
    {
        Launch = launch;
    }

    public ServiceLaunch Launch { get; }

    public GraftService Service => Launch.Service;

    public string DllPath => Launch.Dll;

    public int GrpcPort => Launch.Ports.Grpc;

    public int HttpPort => Launch.Ports.Http;

    /// <summary>gRPC endpoint (HTTP/2, plaintext).</summary>
    public Uri GrpcAddress => Launch.Ports.GrpcAddress;

    /// <summary>HTTP/1 endpoint for <c>/metrics</c> and <c>/healthz/*</c>.</summary>
    public Uri HttpAddress => Launch.Ports.HttpAddress;

    /// <summary>Raised when a run ends (after <see cref="Stop"/>/<see cref="Kill"/>, or on its own: then
    /// <see cref="ServiceExit.Requested"/> is false).</summary>
    public event Action<ServiceExit>? Exited;

    /// <summary>OS process id of the running service, or null when it is not running.</summary>
    public int? ProcessId
    {
        get
        {
            lock (_gate)
            {
                return _process is { HasExited: false } p ? p.Id : null;
            }
        }
    }

    public bool IsRunning
    {
        get
        {
            lock (_gate)
            {
                return _process is { HasExited: false };
            }
        }
    }

    /// <summary>Exit code of the last run, once it has ended.</summary>
    public int? ExitCode
    {
        get
        {
            lock (_gate)
            {
                return _process is { HasExited: true } p ? p.ExitCode : null;
            }
        }
    }

    /// <summary>A channel to the gRPC endpoint, shared by callers; it survives kills and restarts.</summary>
    public GrpcChannel Channel
    {
        get
        {
            lock (_gate)
            {
                return _channel ??= GrpcChannel.ForAddress(GrpcAddress);
            }
        }
    }

    /// <summary>The last lines the process wrote to stdout and stderr, over all its runs, oldest first, each
    /// prefixed with <c>[Service#run]</c>.</summary>
    public IReadOnlyList<string> Output => _output.ToArray();

    /// <summary>Appends a line of the launcher's own to the service's log file (e.g. why it was restarted).</summary>
    public void Note(string line) => _log?.WriteLine(line);

    /// <summary>The captured output as one block, for error messages.</summary>
    public string OutputText(int lastLines = 200) => string.Join('\n', _output.TakeLast(lastLines));

    /// <summary>Starts the process (it must not be running) and returns without waiting for it to be ready.</summary>
    public void Start()
    {
        Process process;
        Process? previous;
        lock (_gate)
        {
            if (_process is { HasExited: false })
            {
                throw new InvalidOperationException($"{Service} is already running.");
            }
            if (!File.Exists(Launch.Dll))
            {
                throw new FileNotFoundException($"{Launch.Dll} is missing: build the service first.", Launch.Dll);
            }
            previous = _process;
            _process = null;
            _stopRequested = false;
            var run = ++_runs;
            var info = StartInfo();
            var log = _log ??= OpenLog();
            process = new Process { StartInfo = info, EnableRaisingEvents = true };
            process.OutputDataReceived += (_, e) => Capture(run, log, e.Data);
            process.ErrorDataReceived += (_, e) => Capture(run, log, e.Data);
            process.Exited += (_, _) => OnExited(process, run);
        }
        // Not under _gate (the previous run's Exited handler takes it): disposing the previous Process waits for its
        // Exited handler, and starting waits for the launcher thread.
        previous?.Dispose();
        ChildLauncher.Start(process);
        lock (_gate)
        {
            _process = process;
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        Live[this] = 0;
    }

    /// <summary>Starts the process and waits until it reports SERVING.</summary>
    public async Task StartAsync(TimeSpan readyTimeout, CancellationToken cancellationToken = default)
    {
        Start();
        await WaitServingAsync(readyTimeout, cancellationToken);
    }

    /// <summary>Waits until gRPC health reports SERVING for the service "" (ready). Throws
    /// <see cref="ServiceStartException"/> when the process exits first or the time runs out.</summary>
    public async Task WaitServingAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var channel = GrpcChannel.ForAddress(GrpcAddress, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2) },
        });
        var health = new Health.HealthClient(channel);
        var clock = Stopwatch.StartNew();
        var last = "not answering";
        while (clock.Elapsed < timeout)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!IsRunning)
            {
                throw new ServiceStartException(Service,
                    $"{Service} exited with code {ExitCode} while starting. Its last output:\n{OutputText(30)}");
            }
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest { Service = "" },
                    deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: cancellationToken);
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving)
                {
                    return;
                }
                last = reply.Status.ToString();
            }
            catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
            {
                last = e.StatusCode == StatusCode.Unavailable ? "not answering" : $"{e.StatusCode}: {e.Status.Detail}";
            }
            await Task.Delay(250, cancellationToken);
        }
        throw new ServiceStartException(Service,
            $"{Service} did not report SERVING within {timeout.TotalSeconds:0} s (last state: {last}). Its last output:\n{OutputText(30)}");
    }

    /// <summary>Completes when the current run ends.</summary>
    public async Task WaitForExitAsync(CancellationToken cancellationToken = default)
    {
        Process? process;
        lock (_gate)
        {
            process = _process;
        }
        if (process is not null)
        {
            await process.WaitForExitAsync(cancellationToken);
        }
    }

    /// <summary>Graceful stop: SIGTERM, then a kill once <paramref name="grace"/> has passed.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        Process? process;
        lock (_gate)
        {
            process = _process;
            _stopRequested = true;
        }
        if (process is null || process.HasExited)
        {
            return;
        }
        _ = SysKill(process.Id, SigTerm);
        using var timeout = new CancellationTokenSource(grace);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
        Live.TryRemove(this, out _);
    }

    /// <summary>SIGKILLs the service (no graceful shutdown), as a crash would, and waits until it is gone.</summary>
    public void Kill()
    {
        Process? process;
        lock (_gate)
        {
            process = _process;
            _stopRequested = true;
        }
        if (process is null)
        {
            return;
        }
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // Never started or already reaped.
        }
        Live.TryRemove(this, out _);
    }

    /// <summary>Kills the service (if running) and starts it again on the same ports, waiting until it is ready.</summary>
    public async Task RestartAsync(TimeSpan readyTimeout, CancellationToken cancellationToken = default)
    {
        Kill();
        await StartAsync(readyTimeout, cancellationToken);
    }

    /// <summary>Kills the process and closes the shared channel.</summary>
    public async ValueTask DisposeAsync()
    {
        Kill();
        GrpcChannel? channel;
        Process? process;
        lock (_gate)
        {
            channel = _channel;
            _channel = null;
            process = _process;
            _process = null;
            _log?.Dispose();
        }
        // Outside the gate: Process.Dispose takes the Process's own lock, which the runtime holds while it raises
        // Exited, and our Exited handler takes the gate — disposing under the gate deadlocks with a process exiting.
        process?.Dispose();
        if (channel is not null)
        {
            await channel.ShutdownAsync();
            channel.Dispose();
        }
    }

    private ProcessStartInfo StartInfo()
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(Launch.Dll)!, // the service reads its appsettings.json from there
        };
        // setpriv --pdeathsig: the kernel signals the child when this process dies without stopping it (kill -9,
        // crash). The signal follows the *thread* that forked, so ChildLauncher forks from one thread that lives as
        // long as the process.
        // A self-contained publish (deploy/publish.sh) runs its own executable; a build runs through dotnet.
        var executable = DotnetHost.SelfContainedExecutable(Launch.Dll);
        var program = executable ?? DotnetHost.Path;
        if (OperatingSystem.IsLinux() && File.Exists(SetPriv))
        {
            info.FileName = SetPriv;
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("TERM");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(program);
        }
        else
        {
            info.FileName = program;
        }
        if (executable is null)
        {
            info.ArgumentList.Add(Launch.Dll);
        }
        info.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url={GrpcAddress}");
        info.ArgumentList.Add("--Kestrel:Endpoints:Grpc:Protocols=Http2");
        info.ArgumentList.Add($"--Kestrel:Endpoints:Http:Url={HttpAddress}");
        info.ArgumentList.Add("--Kestrel:Endpoints:Http:Protocols=Http1");
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in Launch.Environment)
        {
            info.Environment[key] = value;
        }
        return info;
    }

    private RotatingLogFile? OpenLog()
    {
        if (Launch.LogFile is not { } path)
        {
            return null;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return new RotatingLogFile(path, Launch.LogMaxBytes);
    }

    private void Capture(int run, RotatingLogFile? log, string? line)
    {
        if (line is null)
        {
            return;
        }
        _output.Enqueue($"[{Service}#{run}] {line}");
        while (_output.Count > Launch.OutputLinesKept && _output.TryDequeue(out _))
        {
        }
        log?.WriteLine(line);
    }

    private void OnExited(Process process, int run)
    {
        // Let the output readers drain before the exit is reported.
        process.WaitForExit();
        _output.Enqueue($"[{Service}#{run}] process exited");
        bool requested;
        lock (_gate)
        {
            requested = _stopRequested || !ReferenceEquals(process, _process);
        }
        Exited?.Invoke(new ServiceExit(Service, run, process.ExitCode, requested));
    }

    private const string SetPriv = "/usr/bin/setpriv";
    private const int SigTerm = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);
}

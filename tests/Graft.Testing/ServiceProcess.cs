using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace Graft.Testing;

/// <summary>One service running as a separate <c>dotnet Graft.X.dll</c> process on fixed loopback ports, with its
/// console output captured. Kill and restart keep the ports, so clients reconnect to the same address.</summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    // Every live child, so a test host that exits without disposing still takes them down.
    private static readonly ConcurrentDictionary<ServiceProcess, byte> Live = new();

    private readonly ConcurrentQueue<string> _output = new();
    private readonly IReadOnlyDictionary<string, string> _environment;
    private readonly object _gate = new();
    private Process? _process;
    private GrpcChannel? _channel;
    private int _starts;

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

    public ServiceProcess(GraftService service, int grpcPort, int httpPort, IReadOnlyDictionary<string, string> environment)
    {
        Service = service;
        GrpcPort = grpcPort;
        HttpPort = httpPort;
        _environment = environment;
        DllPath = RepositoryLayout.ServiceDll(service);
    }

    public GraftService Service { get; }

    public string DllPath { get; }

    public int GrpcPort { get; }

    public int HttpPort { get; }

    /// <summary>gRPC endpoint (HTTP/2, plaintext).</summary>
    public Uri GrpcAddress => new($"http://127.0.0.1:{GrpcPort}");

    /// <summary>HTTP/1 endpoint for <c>/metrics</c> and <c>/healthz/*</c>.</summary>
    public Uri HttpAddress => new($"http://127.0.0.1:{HttpPort}");

    /// <summary>OS process id of the running service (the <c>dotnet</c> process), or null when stopped.</summary>
    public int? ProcessId { get; private set; }

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

    /// <summary>Everything the process wrote to stdout and stderr so far, over all its runs, oldest first.</summary>
    public IReadOnlyList<string> Output => _output.ToArray();

    /// <summary>The captured output as one block, for assertion messages.</summary>
    public string OutputText(int lastLines = 200) => string.Join('\n', _output.TakeLast(lastLines));

    /// <summary>Starts the process and waits until gRPC health reports SERVING for the service "" (ready).</summary>
    public async Task StartAsync(TimeSpan readyTimeout, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_process is { HasExited: false })
            {
                throw new InvalidOperationException($"{Service} is already running.");
            }
            var run = ++_starts;
            var psi = new ProcessStartInfo("/bin/sh")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = false,
                UseShellExecute = false,
                WorkingDirectory = Path.GetDirectoryName(DllPath)!,
            };
            // A watchdog shell: the service dies with this test host even if the host is SIGKILLed and never disposes.
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("""
                dotnet "$@" & child=$!
                echo "graft-testing: pid $child"
                trap 'kill -9 $child 2>/dev/null' EXIT TERM INT
                while kill -0 "$GRAFT_TEST_HOST_PID" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
                """);
            psi.ArgumentList.Add("graft-service");
            psi.ArgumentList.Add(DllPath);
            psi.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url={GrpcAddress}");
            psi.ArgumentList.Add("--Kestrel:Endpoints:Grpc:Protocols=Http2");
            psi.ArgumentList.Add($"--Kestrel:Endpoints:Http:Url={HttpAddress}");
            psi.ArgumentList.Add("--Kestrel:Endpoints:Http:Protocols=Http1");
            psi.Environment["GRAFT_TEST_HOST_PID"] = Environment.ProcessId.ToString();
            psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            psi.Environment["DOTNET_NOLOGO"] = "1";
            foreach (var (key, value) in _environment)
            {
                psi.Environment[key] = value;
            }

            var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
            process.OutputDataReceived += (_, e) => Capture(run, e.Data);
            process.ErrorDataReceived += (_, e) => Capture(run, e.Data);
            process.Exited += (_, _) => _output.Enqueue($"[{Service}#{run}] process exited");
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _process = process;
            Live[this] = 0;
        }
        await WaitReadyAsync(readyTimeout, cancellationToken);
    }

    /// <summary>SIGKILLs the service (no graceful shutdown), as a crash would, and waits until it is gone.</summary>
    public void Kill()
    {
        Process? process;
        lock (_gate)
        {
            process = _process;
        }
        if (process is null)
        {
            return;
        }
        try
        {
            if (!process.HasExited)
            {
                // Kill the service itself first, then the watchdog shell: the same as a SIGKILL to the service.
                if (ProcessId is { } pid)
                {
                    try
                    {
                        using var service = Process.GetProcessById(pid);
                        service.Kill();
                    }
                    catch (ArgumentException)
                    {
                        // Already gone.
                    }
                }
                process.Kill(entireProcessTree: true);
            }
            process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // Never started or already reaped.
        }
        ProcessId = null;
        Live.TryRemove(this, out _);
    }

    /// <summary>Kills the service (if running) and starts it again on the same ports, waiting until it is ready.</summary>
    public async Task RestartAsync(TimeSpan readyTimeout, CancellationToken cancellationToken = default)
    {
        Kill();
        await StartAsync(readyTimeout, cancellationToken);
    }

    /// <summary>Reads the Prometheus text on <c>/metrics</c>.</summary>
    public async Task<PrometheusText> ScrapeMetricsAsync(CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var text = await http.GetStringAsync(new Uri(HttpAddress, "/metrics"), cancellationToken);
        return PrometheusText.Parse(text);
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        GrpcChannel? channel;
        lock (_gate)
        {
            channel = _channel;
            _channel = null;
            _process?.Dispose();
            _process = null;
        }
        if (channel is not null)
        {
            await channel.ShutdownAsync();
            channel.Dispose();
        }
    }

    private void Capture(int run, string? line)
    {
        if (line is null)
        {
            return;
        }
        if (line.StartsWith("graft-testing: pid ", StringComparison.Ordinal) && int.TryParse(line.AsSpan("graft-testing: pid ".Length), out var pid))
        {
            ProcessId = pid;
        }
        _output.Enqueue($"[{Service}#{run}] {line}");
    }

    private async Task WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var channel = GrpcChannel.ForAddress(GrpcAddress);
        var health = new Health.HealthClient(channel);
        var clock = Stopwatch.StartNew();
        var last = "no answer yet";
        while (clock.Elapsed < timeout)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!IsRunning)
            {
                throw new InvalidOperationException($"{Service} exited while starting. Its output:\n{OutputText()}");
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
            catch (RpcException e)
            {
                last = $"{e.StatusCode}: {e.Status.Detail}";
            }
            await Task.Delay(250, cancellationToken);
        }
        throw new TimeoutException($"{Service} was not SERVING within {timeout.TotalSeconds:0} s (last health answer: {last}). Its output:\n{OutputText()}");
    }
}

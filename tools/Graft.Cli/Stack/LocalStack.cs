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

    /// <summary>Registry (heads/), logs (logs/) and the admin token file live here.</summary>
    public string DataDirectory { get; init; } = "data";

    /// <summary>Admin token to give the Gateway; null generates a random one.</summary>
    public string? AdminToken { get; init; }

    /// <summary>How long to wait for every service to report SERVING.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromMinutes(3);
}

/// <summary>One running service process.</summary>
public sealed record ServiceProcess(string Name, string Dll, Uri Grpc, Uri Http, string LogPath, Process Process);

/// <summary>BackboneService, HeadService and Gateway as child processes of this CLI, on loopback ports.
/// Disposing stops them (SIGTERM, then kill); they are also killed if the CLI dies.</summary>
public sealed partial class LocalStack : IAsyncDisposable
{
    private const string Host = "127.0.0.1";
    private readonly List<ServiceProcess> _services = [];
    private readonly ManualResetEventSlim _released = new();
    private int _disposed;

    private LocalStack(StackPorts ports, string dataDirectory, string adminToken, string tokenFile)
    {
        Ports = ports;
        DataDirectory = dataDirectory;
        AdminToken = adminToken;
        TokenFile = tokenFile;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
    }

    public StackPorts Ports { get; }

    public string DataDirectory { get; }

    public string AdminToken { get; }

    public string TokenFile { get; }

    public Uri GatewayAddress => new($"http://{Host}:{Ports.Gateway}");

    public IReadOnlyList<ServiceProcess> Services => _services;

    /// <summary>Starts the three services and returns once each reports SERVING on gRPC health.</summary>
    public static async Task<LocalStack> StartAsync(StackSettings settings, Action<string> status, CancellationToken ct)
    {
        var ports = new StackPorts(settings.BasePort);
        await EnsurePortsFreeAsync(ports, ct);
        var backboneDll = ServiceLocator.FindServiceDll("Graft.BackboneService", "BackboneService");
        var headsDll = ServiceLocator.FindServiceDll("Graft.HeadService", "HeadService");
        var gatewayDll = ServiceLocator.FindServiceDll("Graft.Gateway", "Gateway");

        var data = Path.GetFullPath(settings.DataDirectory);
        var logs = Path.Combine(data, "logs");
        Directory.CreateDirectory(Path.Combine(data, "heads"));
        Directory.CreateDirectory(logs);
        var token = settings.AdminToken ?? RandomNumberGenerator.GetHexString(48, lowercase: true);
        var tokenFile = Path.Combine(data, "admin-token");
        WriteSecret(tokenFile, token);

        var stack = new LocalStack(ports, data, token, tokenFile);
        try
        {
            string Url(int port) => $"http://{Host}:{port}";
            var specs = new List<(string Name, string Dll, int Port, Dictionary<string, string> Env)>
            {
                // Quantized backbones (resnet18-int8) are cached with the stack's data, unless the user chose a place.
                ("Backbone", backboneDll, ports.Backbone, Environment.GetEnvironmentVariable("Graft__Backbone__QuantizedCacheDirectory") is { Length: > 0 }
                    ? new() : new() { ["Graft__Backbone__QuantizedCacheDirectory"] = Path.Combine(data, "backbone", "quantized") }),
                ("Heads", headsDll, ports.Heads, new() { ["Graft__Heads__RegistryPath"] = Path.Combine(data, "heads") }),
                ("Gateway", gatewayDll, ports.Gateway, new()
                {
                    ["Graft__Gateway__AdminToken"] = token,
                    ["Graft__Gateway__BackboneAddress"] = Url(ports.Backbone),
                    ["Graft__Gateway__HeadsAddress"] = Url(ports.Heads),
                }),
            };
            stack.Launch(specs.Select(s => (s.Name, s.Dll, new Uri(Url(s.Port)), new Uri(Url(s.Port + 1)), Path.Combine(logs, s.Name.ToLowerInvariant() + ".log"), s.Env)).ToList());
            status($"Started {string.Join(", ", stack.Services.Select(s => $"{s.Name} (pid {s.Process.Id})"))}; waiting for them to report SERVING (logs in {logs})");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(settings.StartTimeout);
            await Task.WhenAll(stack.Services.Select(s => WaitServingAsync(s, settings.StartTimeout, status, timeout.Token, ct)));
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>Completes when a service exits on its own (returned), or when <paramref name="ct"/> is cancelled (null).</summary>
    public async Task<ServiceProcess?> WaitForUnexpectedExitAsync(CancellationToken ct)
    {
        var exits = _services.Select(async s => { await s.Process.WaitForExitAsync(ct); return s; }).ToList();
        try
        {
            return await await Task.WhenAny(exits);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>The last lines a service wrote, to show why it stopped.</summary>
    public static string Tail(ServiceProcess service, int lines = 15)
    {
        try
        {
            using var stream = new FileStream(service.LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
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
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        foreach (var service in Enumerable.Reverse(_services))
        {
            var process = service.Process;
            if (process.HasExited) continue;
            _ = SysKill(process.Id, SigTerm);
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(15));
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
        _released.Set();
        foreach (var service in _services) service.Process.Dispose();
    }

    private void KillAll()
    {
        foreach (var service in _services)
        {
            try
            {
                if (!service.Process.HasExited) service.Process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }
    }

    /// <summary>Starts the processes on one dedicated thread that lives as long as the stack: Linux sends the
    /// parent-death signal when the *thread* that forked a child ends, so a pool thread would not do.</summary>
    private void Launch(List<(string Name, string Dll, Uri Grpc, Uri Http, string Log, Dictionary<string, string> Env)> specs)
    {
        var launched = new TaskCompletionSource();
        var keeper = new Thread(() =>
        {
            try
            {
                foreach (var spec in specs) _services.Add(StartProcess(spec.Name, spec.Dll, spec.Grpc, spec.Http, spec.Log, spec.Env));
                launched.SetResult();
            }
            catch (Exception e)
            {
                launched.SetException(e);
                return;
            }
            _released.Wait();
        })
        { IsBackground = true, Name = "graft-stack" };
        keeper.Start();
        launched.Task.GetAwaiter().GetResult();
    }

    private static ServiceProcess StartProcess(string name, string dll, Uri grpc, Uri http, string logPath, Dictionary<string, string> env)
    {
        var info = new ProcessStartInfo
        {
            WorkingDirectory = Path.GetDirectoryName(dll)!, // the service reads its appsettings.json from there
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        // setpriv --pdeathsig: the kernel signals the child if this CLI dies without stopping it (kill -9, crash).
        if (OperatingSystem.IsLinux() && File.Exists("/usr/bin/setpriv"))
        {
            info.FileName = "/usr/bin/setpriv";
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("TERM");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(ServiceLocator.DotnetHost());
        }
        else
        {
            info.FileName = ServiceLocator.DotnetHost();
        }
        info.ArgumentList.Add(dll);
        info.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url={grpc}");
        info.ArgumentList.Add($"--Kestrel:Endpoints:Http:Url={http}");
        foreach (var (key, value) in env) info.Environment[key] = value;

        var log = new StreamWriter(new FileStream(logPath, FileMode.Create, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => WriteLine(log, e.Data);
        process.ErrorDataReceived += (_, e) => WriteLine(log, e.Data);
        process.Exited += (_, _) => { lock (log) log.Dispose(); };
        if (!process.Start()) throw new CliException($"Could not start {name} ({dll}).", ExitCodes.Unreachable);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ServiceProcess(name, dll, grpc, http, logPath, process);
    }

    private static void WriteLine(StreamWriter log, string? line)
    {
        if (line is null) return;
        lock (log)
        {
            try
            {
                log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // The process has exited and its log is closed.
            }
        }
    }

    private static async Task WaitServingAsync(ServiceProcess service, TimeSpan limit, Action<string> status, CancellationToken timeout, CancellationToken user)
    {
        using var channel = GrpcChannel.ForAddress(service.Grpc, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2) },
        });
        var health = new Health.HealthClient(channel);
        var lastState = "not answering";
        while (true)
        {
            if (service.Process.HasExited)
                throw new CliException(
                    $"{service.Name} exited with code {service.Process.ExitCode} while starting. Last lines of {service.LogPath}:\n{Tail(service)}",
                    ExitCodes.Unreachable);
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest { Service = "" }, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: timeout);
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving)
                {
                    status($"{service.Name} is SERVING on {service.Grpc}");
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
                await Task.Delay(TimeSpan.FromMilliseconds(500), timeout);
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

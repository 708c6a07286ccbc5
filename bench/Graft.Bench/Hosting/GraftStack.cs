using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Graft.V1;

namespace Graft.Bench.Hosting;

/// <summary>
/// The three Graft services as separate processes on free loopback ports, started from their Release builds
/// (services/&lt;X&gt;/bin/Release/net10.0/linux-x64/Graft.&lt;X&gt;.dll), each with its own log file.
/// </summary>
public sealed class GraftStack : IAsyncDisposable
{
    public const string AdminToken = "bench-admin-token";

    private readonly List<Process> _processes = [];
    private readonly Dictionary<string, Process> _byName = [];
    private readonly List<GrpcChannel> _channels = [];

    private GrpcChannel _backboneChannel = null!;
    private GrpcChannel _headsChannel = null!;
    private GrpcChannel _gatewayChannel = null!;

    public int BackboneHttpPort { get; private set; }

    public V1.Backbone.BackboneClient Backbone => new(_backboneChannel);
    public Heads.HeadsClient Heads => new(_headsChannel);
    public Gateway.GatewayClient Gateway => new(_gatewayChannel);

    /// <summary>Metadata carrying the admin token, for TrainHead and the other admin calls.</summary>
    public static Grpc.Core.Metadata AdminHeaders => new() { { "authorization", $"Bearer {AdminToken}" } };

    public static string DllPath(string repoRoot, string service) =>
        Path.Combine(repoRoot, "services", service, "bin", "Release", "net10.0", "linux-x64", $"Graft.{service}.dll");

    /// <summary>Starts BackboneService, HeadService and Gateway and waits until each reports SERVING.</summary>
    /// <param name="backboneSettings">Extra BackboneService settings, e.g. <c>--Graft:Backbone:Profile=resnet18-int8</c>.</param>
    public static async Task<GraftStack> StartAsync(string repoRoot, string workDirectory, TimeSpan readyTimeout, params string[] backboneSettings)
    {
        var stack = new GraftStack();
        try
        {
            var registry = Path.Combine(workDirectory, "heads-registry");
            if (Directory.Exists(registry)) Directory.Delete(registry, recursive: true);
            Directory.CreateDirectory(registry);
            var logs = Path.Combine(workDirectory, "logs");
            Directory.CreateDirectory(logs);

            var (backboneGrpc, backboneHttp) = (FreePort(), FreePort());
            var (headsGrpc, headsHttp) = (FreePort(), FreePort());
            var (gatewayGrpc, gatewayHttp) = (FreePort(), FreePort());
            stack.BackboneHttpPort = backboneHttp;

            stack.Start(repoRoot, "BackboneService", backboneGrpc, backboneHttp, logs, [], ["--Graft:Backbone:Device=cpu", .. backboneSettings]);
            stack.Start(repoRoot, "HeadService", headsGrpc, headsHttp, logs, [], [$"--Graft:Heads:RegistryPath={registry}"]);
            stack.Start(repoRoot, "Gateway", gatewayGrpc, gatewayHttp, logs, [("Graft__Gateway__AdminToken", AdminToken)],
            [
                $"--Graft:Gateway:BackboneAddress=http://127.0.0.1:{backboneGrpc}",
                $"--Graft:Gateway:HeadsAddress=http://127.0.0.1:{headsGrpc}",
            ]);

            stack._backboneChannel = stack.Channel(backboneGrpc);
            stack._headsChannel = stack.Channel(headsGrpc);
            stack._gatewayChannel = stack.Channel(gatewayGrpc);
            foreach (var (channel, name) in new[] { (stack._backboneChannel, "BackboneService"), (stack._headsChannel, "HeadService"), (stack._gatewayChannel, "Gateway") })
            {
                await WaitServingAsync(channel, name, stack, readyTimeout);
            }
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    private void Start(string repoRoot, string service, int grpcPort, int httpPort, string logs,
        (string Name, string Value)[] environment, string[] extraArgs)
    {
        var dll = DllPath(repoRoot, service);
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{dll} is missing. Build it first: dotnet build services/{service} -c Release", dll);
        }
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(dll);
        start.ArgumentList.Add($"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{grpcPort}");
        start.ArgumentList.Add($"--Kestrel:Endpoints:Http:Url=http://127.0.0.1:{httpPort}");
        foreach (var a in extraArgs) start.ArgumentList.Add(a);
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (name, value) in environment) start.Environment[name] = value;

        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {service}.");
        _processes.Add(process);
        _byName[service] = process;
        var log = new StreamWriter(Path.Combine(logs, $"{service}.log")) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>CPU seconds (user + system) each service process has used so far, and this harness process.</summary>
    public Dictionary<string, double> CpuSeconds()
    {
        var result = new Dictionary<string, double>();
        foreach (var (name, process) in _byName)
        {
            process.Refresh();
            result[name] = process.HasExited ? 0 : process.TotalProcessorTime.TotalSeconds;
        }
        using var self = Process.GetCurrentProcess();
        result["bench client"] = self.TotalProcessorTime.TotalSeconds;
        return result;
    }

    private GrpcChannel Channel(int port)
    {
        var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
            MaxSendMessageSize = 64 * 1024 * 1024,
        });
        _channels.Add(channel);
        return channel;
    }

    private static async Task WaitServingAsync(GrpcChannel channel, string name, GraftStack stack, TimeSpan timeout)
    {
        var health = new Health.HealthClient(channel);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (stack._processes.FirstOrDefault(p => p.HasExited) is { } dead)
            {
                throw new InvalidOperationException($"A Graft service exited during start-up (exit {dead.ExitCode}); see bench/out/logs/.");
            }
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest { Service = "" }, deadline: DateTime.UtcNow.AddSeconds(2));
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving) return;
            }
            catch (Grpc.Core.RpcException)
            {
                // Not listening or not ready yet.
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{name} was not SERVING within {timeout.TotalSeconds:F0} s.");
            await Task.Delay(250);
        }
    }

    /// <summary>Reads one counter from the backbone's Prometheus endpoint (e.g. <c>graft_backbone_inferences_total</c>); 0 when absent.</summary>
    public async Task<double> ReadBackboneCounterAsync(string name)
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{BackboneHttpPort}/metrics");
        double total = 0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith('#') || !line.StartsWith(name, StringComparison.Ordinal)) continue;
            var rest = line[name.Length..];
            if (rest.Length > 0 && rest[0] != ' ' && rest[0] != '{') continue;
            // "name{labels} value [timestamp]": the value is the first token after the labels.
            var afterLabels = rest.StartsWith('{') ? rest[(rest.IndexOf('}') + 1)..] : rest;
            var value = afterLabels.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            if (double.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out var v)) total += v;
        }
        return total;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels) channel.Dispose();
        foreach (var process in _processes)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
                }
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                // Already gone.
            }
            process.Dispose();
        }
    }
}

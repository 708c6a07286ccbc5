using System.Diagnostics;
using Graft.Launcher;
using Grpc.Net.Client;
using Graft.V1;

namespace Graft.Bench.Hosting;

/// <summary>
/// The three Graft services as separate processes on free loopback ports, started from their Release builds
/// (services/&lt;X&gt;/bin/Release/net10.0/linux-x64/Graft.&lt;X&gt;.dll) by the shared launcher, each with its own log file.
/// </summary>
public sealed class GraftStack : IAsyncDisposable
{
    public const string AdminToken = "bench-admin-token";

    private readonly List<GrpcChannel> _channels = [];
    private ServiceGroup _group = null!;

    private GrpcChannel _backboneChannel = null!;
    private GrpcChannel _headsChannel = null!;
    private GrpcChannel _gatewayChannel = null!;

    public int BackboneHttpPort => _group.Backbone.HttpPort;

    public V1.Backbone.BackboneClient Backbone => new(_backboneChannel);
    public V1.Heads.HeadsClient Heads => new(_headsChannel);
    public Gateway.GatewayClient Gateway => new(_gatewayChannel);

    /// <summary>Metadata carrying the admin token, for TrainHead and the other admin calls.</summary>
    public static Grpc.Core.Metadata AdminHeaders => new() { { "authorization", $"Bearer {AdminToken}" } };

    public static string DllPath(string repoRoot, GraftService service) => service.BuiltDll(repoRoot, "Release");

    /// <summary>Starts BackboneService, HeadService and Gateway and waits until each reports SERVING.</summary>
    /// <param name="backboneSettings">Extra BackboneService settings, e.g. <c>--Graft:Backbone:Profile=resnet18-int8</c>.</param>
    public static Task<GraftStack> StartAsync(string repoRoot, string workDirectory, TimeSpan readyTimeout, params string[] backboneSettings) =>
        StartAsync(repoRoot, workDirectory, readyTimeout, new Dictionary<string, string>(), backboneSettings);

    /// <summary>Starts the services with <paramref name="environment"/> added to every service's environment
    /// (e.g. <c>DOTNET_ThreadPool_UnfairSemaphoreSpinLimit</c>), then as <see cref="StartAsync(string, string, TimeSpan, string[])"/>.</summary>
    public static async Task<GraftStack> StartAsync(string repoRoot, string workDirectory, TimeSpan readyTimeout,
        IReadOnlyDictionary<string, string> environment, params string[] backboneSettings)
    {
        var registry = Path.Combine(workDirectory, "heads-registry");
        if (Directory.Exists(registry)) Directory.Delete(registry, recursive: true);
        Directory.CreateDirectory(registry);
        foreach (var service in GraftServices.All)
        {
            var dll = DllPath(repoRoot, service);
            if (!File.Exists(dll)) throw new FileNotFoundException($"{dll} is missing. Build it first: dotnet build services/{service.Folder()} -c Release", dll);
        }
        var quiet = new Dictionary<string, string>(environment) { ["ASPNETCORE_ENVIRONMENT"] = "Production", ["Logging__LogLevel__Default"] = "Warning" };
        var launch = new StackLaunch(PortPlan.Free(), s => DllPath(repoRoot, s))
        {
            LogDirectory = Path.Combine(workDirectory, "logs"),
            Environment = new Dictionary<GraftService, IReadOnlyDictionary<string, string>>
            {
                [GraftService.Backbone] = BackboneEnvironment(quiet, backboneSettings),
                [GraftService.Heads] = new Dictionary<string, string>(quiet) { ["Graft__Heads__RegistryPath"] = registry },
                [GraftService.Gateway] = new Dictionary<string, string>(quiet) { ["Graft__Gateway__AdminToken"] = AdminToken },
            },
        };
        var stack = new GraftStack { _group = await ServiceGroup.StartAsync(launch, readyTimeout) };
        stack._backboneChannel = stack.Channel(stack._group.Backbone.GrpcAddress);
        stack._headsChannel = stack.Channel(stack._group.Heads.GrpcAddress);
        stack._gatewayChannel = stack.Channel(stack._group.Gateway.GrpcAddress);
        return stack;
    }

    /// <summary>Process ids of the three services, by folder name (BackboneService, HeadService, Gateway).</summary>
    public IReadOnlyDictionary<string, int> ProcessIds =>
        _group.Services.Where(s => s.ProcessId is not null).ToDictionary(s => s.Service.Folder(), s => s.ProcessId!.Value);

    /// <summary>CPU seconds (user + system) each service process has used so far, and this harness process.</summary>
    public Dictionary<string, double> CpuSeconds()
    {
        var result = new Dictionary<string, double>();
        foreach (var service in _group.Services)
        {
            try
            {
                using var process = service.ProcessId is { } pid ? Process.GetProcessById(pid) : null;
                result[service.Service.Folder()] = process?.TotalProcessorTime.TotalSeconds ?? 0;
            }
            catch (ArgumentException)
            {
                result[service.Service.Folder()] = 0;
            }
        }
        using var self = Process.GetCurrentProcess();
        result["bench client"] = self.TotalProcessorTime.TotalSeconds;
        return result;
    }

    private GrpcChannel Channel(Uri address)
    {
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
            MaxSendMessageSize = 64 * 1024 * 1024,
        });
        _channels.Add(channel);
        return channel;
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

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels) channel.Dispose();
        if (_group is not null) await _group.DisposeAsync();
    }

    /// <summary>The backbone's environment: quiet logging, CPU, and each <c>--Graft:Backbone:Key=value</c> setting as <c>Graft__Backbone__Key</c>.</summary>
    private static Dictionary<string, string> BackboneEnvironment(Dictionary<string, string> quiet, string[] settings)
    {
        var env = new Dictionary<string, string>(quiet) { ["Graft__Backbone__Device"] = "cpu" };
        foreach (var setting in settings)
        {
            var (key, value) = (setting.Split('=', 2)[0].TrimStart('-').Replace(":", "__", StringComparison.Ordinal), setting.Split('=', 2)[1]);
            env[key] = value;
        }
        return env;
    }
}

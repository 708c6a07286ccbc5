using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Reliability.Tests.Support;

/// <summary>The three real services as separate processes, with <b>two</b> HeadService replicas sharing one registry
/// behind the gateway (round-robin over both). Built from the shared harness's <see cref="ServiceProcess"/>, because
/// <see cref="ServiceStack"/> starts a single HeadService. The registry lives in a private work folder, so a path
/// escape (a head name such as <c>../x</c>) would show up as a stray entry beside it.</summary>
public sealed class ReliabilityStack : IAsyncDisposable
{
    private readonly List<ServiceProcess> _processes = [];

    private ReliabilityStack(string work)
    {
        WorkDirectory = work;
        RegistryDirectory = Path.Combine(work, "registry");
        Directory.CreateDirectory(RegistryDirectory);
    }

    public string AdminToken { get; } = "rel-admin-" + Guid.NewGuid().ToString("N");

    public string PredictToken { get; } = "rel-predict-" + Guid.NewGuid().ToString("N");

    /// <summary>Private folder holding only <see cref="RegistryDirectory"/>.</summary>
    public string WorkDirectory { get; }

    public string RegistryDirectory { get; }

    public ServiceProcess Backbone { get; private set; } = null!;

    public ServiceProcess HeadsA { get; private set; } = null!;

    public ServiceProcess HeadsB { get; private set; } = null!;

    public ServiceProcess Gateway { get; private set; } = null!;

    public IReadOnlyList<ServiceProcess> Processes => _processes;

    public IReadOnlyList<ServiceProcess> HeadReplicas => [HeadsA, HeadsB];

    public V1.Gateway.GatewayClient GatewayClient => new(Gateway.Channel);

    public V1.Backbone.BackboneClient BackboneClient => new(Backbone.Channel);

    public Metadata AdminHeaders => ServiceStack.Bearer(AdminToken);

    public Metadata PredictHeaders => ServiceStack.Bearer(PredictToken);

    /// <summary>How long a service may take to become ready; generous because the CI machine is shared.</summary>
    public static TimeSpan ReadyTimeout { get; } = TimeSpan.FromMinutes(4);

    public static async Task<ReliabilityStack> StartAsync()
    {
        var stack = new ReliabilityStack(Directory.CreateTempSubdirectory("graft-reliability-").FullName);
        try
        {
            stack.Backbone = stack.Add(GraftService.Backbone, new() { ["Graft__Backbone__Device"] = "cpu" });
            var heads = new Dictionary<string, string>
            {
                ["Graft__Heads__RegistryPath"] = stack.RegistryDirectory,
                // Two replicas share two cores with everything else: one libtorch thread each.
                ["Graft__Heads__TrainingThreads"] = "1",
                ["Graft__Heads__RescanIntervalSeconds"] = "1",
            };
            stack.HeadsA = stack.Add(GraftService.Heads, new(heads));
            stack.HeadsB = stack.Add(GraftService.Heads, new(heads));
            stack.Gateway = stack.Add(GraftService.Gateway, new()
            {
                ["Graft__Gateway__BackboneAddress"] = stack.Backbone.GrpcAddress.ToString(),
                ["Graft__Gateway__HeadsAddress"] = $"{stack.HeadsA.GrpcAddress},{stack.HeadsB.GrpcAddress}",
                ["Graft__Gateway__AdminToken"] = stack.AdminToken,
                ["Graft__Gateway__PredictToken"] = stack.PredictToken,
                ["Graft__Gateway__BreakerBreakDuration"] = "00:00:01",
                ["Graft__Gateway__BreakerMinimumThroughput"] = "4",
                ["Graft__Gateway__MaxReconnectBackoff"] = "00:00:00.500",
            });
            await Task.WhenAll(
                stack.Backbone.StartAsync(ReadyTimeout),
                stack.HeadsA.StartAsync(ReadyTimeout),
                stack.HeadsB.StartAsync(ReadyTimeout));
            await stack.Gateway.StartAsync(ReadyTimeout);
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>A HeadService client bound to one replica (bypassing the gateway).</summary>
    public static V1.Heads.HeadsClient HeadsClient(ServiceProcess replica) => new(replica.Channel);

    /// <summary>Every line every process printed, over all its runs.</summary>
    public IEnumerable<string> AllOutput => _processes.SelectMany(p => p.Output);

    public string Diagnostics(int lastLines = 40) =>
        string.Join("\n", _processes.Select(p => $"----- {p.Service} :{p.GrpcPort} -----\n{p.OutputText(lastLines)}"));

    public async ValueTask DisposeAsync()
    {
        foreach (var process in Enumerable.Reverse(_processes))
        {
            await process.DisposeAsync();
        }
        // A killed replica's last rescan may still be touching the registry for a moment; retry briefly.
        for (var attempt = 0; attempt < 5 && Directory.Exists(WorkDirectory); attempt++)
        {
            try
            {
                Directory.Delete(WorkDirectory, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await Task.Delay(200);
            }
        }
    }

    private ServiceProcess Add(GraftService service, Dictionary<string, string> environment)
    {
        environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var process = TestProcesses.Create(service, environment);
        _processes.Add(process);
        return process;
    }
}

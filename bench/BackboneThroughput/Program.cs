// Extract throughput under 16 concurrent gRPC callers (the real service process, real loopback sockets, cache off)
// against raw ONNX Runtime on the same cut ResNet18 at batch 1 and batch 16, in one run on the same machine.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.V1;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

var seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 20;
var root = FindRepositoryRoot();
var images = Directory.GetFiles(Path.Combine(root, "samples", "fashion", "train"), "*.png", SearchOption.AllDirectories)
    .Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray();

// Raw ORT: the same cut model and preprocessing the service uses, no gRPC, no batcher.
var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
var preprocessor = Preprocessor.Create(profile, 40_000_000);
var inputs = images.Take(16).Select(i => preprocessor.Preprocess(i)).ToArray();
// Decode + preprocess alone, one thread: what every request pays before the model.
var preprocessOnly = Measure(seconds / 8, () => { foreach (var image in images.Take(16)) preprocessor.Preprocess(image); return 16; });
double raw1, raw16, batcher1;
using (var model = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance))
{
    model.WarmUp();
    raw1 = Measure(seconds / 4, () => { model.Run([inputs[0]]); return 1; });
    raw16 = Measure(seconds / 4, () => { model.Run(inputs); return 16; });
    // The dynamic batcher in-process, one caller at a time: what batching itself adds to a lone request.
    var meters = new Microsoft.Extensions.DependencyInjection.ServiceCollection().AddMetrics().BuildServiceProvider()
        .GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
    await using var batcher = new Graft.Backbone.Batching.DynamicBatcher((Func<IReadOnlyList<float[]>, float[][]>)model.Run, 16, TimeSpan.FromMilliseconds(2),
        new Graft.Backbone.Telemetry.BackboneMetrics(meters), NullLogger.Instance);
    batcher1 = Measure(seconds / 4, () => { batcher.EnqueueAsync(inputs[0], CancellationToken.None).GetAwaiter().GetResult(); return 1; });
}

// The service process over loopback, cache off so every request runs the model.
var serviceDir = Path.Combine(Path.GetDirectoryName(typeof(BackboneModel).Assembly.Location)!);
var (grpcPort, httpPort) = (FreePort(), FreePort());
var start = new ProcessStartInfo("dotnet") { WorkingDirectory = serviceDir, RedirectStandardOutput = true, RedirectStandardError = true };
foreach (var a in new[] { Path.Combine(serviceDir, "Graft.BackboneService.dll"), $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{grpcPort}",
    $"--Kestrel:Endpoints:Http:Url=http://127.0.0.1:{httpPort}", "--Graft:Backbone:Device=cpu", "--Graft:Backbone:CacheBytes=0", "--Logging:LogLevel:Default=Warning" })
{
    start.ArgumentList.Add(a);
}
using var service = Process.Start(start)!;
service.OutputDataReceived += (_, _) => { };
service.ErrorDataReceived += (_, _) => { };
service.BeginOutputReadLine();
service.BeginErrorReadLine();
double extract16, extract1;
try
{
    using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
    var health = new Health.HealthClient(channel);
    while (true)
    {
        try
        {
            if ((await health.CheckAsync(new HealthCheckRequest())).Status == HealthCheckResponse.Types.ServingStatus.Serving) break;
        }
        catch (Grpc.Core.RpcException)
        {
        }
        await Task.Delay(200);
    }
    var client = new Backbone.BackboneClient(channel);
    var requests = images.Select(i => new ExtractRequest { Image = ByteString.CopyFrom(i) }).ToArray();
    extract1 = await MeasureConcurrentAsync(1, seconds / 4);
    extract16 = await MeasureConcurrentAsync(16, seconds / 4);

    async Task<double> MeasureConcurrentAsync(int callers, double duration)
    {
        var stop = Stopwatch.StartNew();
        var counts = await Task.WhenAll(Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
        {
            var n = 0;
            while (stop.Elapsed.TotalSeconds < duration)
            {
                await client.ExtractAsync(requests[((c * 97) + n) % requests.Length]);
                n++;
            }
            return n;
        })));
        return counts.Sum() / stop.Elapsed.TotalSeconds;
    }
}
finally
{
    service.Kill(entireProcessTree: true);
    await service.WaitForExitAsync();
}

Console.WriteLine($"cores: {Environment.ProcessorCount}, load average: {File.ReadAllText("/proc/loadavg").Trim()}");
Console.WriteLine($"decode+preprocess only   : {preprocessOnly,7:F1} img/s (one thread)");
Console.WriteLine($"raw ORT batch 1          : {raw1,7:F1} img/s");
Console.WriteLine($"raw ORT batch 16         : {raw16,7:F1} img/s");
Console.WriteLine($"batcher in-process, 1   : {batcher1,7:F1} img/s");
Console.WriteLine($"Extract, 1 caller        : {extract1,7:F1} img/s");
Console.WriteLine($"Extract, 16 callers      : {extract16,7:F1} img/s");
Console.WriteLine($"Extract(16) / raw(16)    : {extract16 / raw16,7:F2}");
Console.WriteLine($"Extract(16) / raw(1)     : {extract16 / raw1,7:F2}");

static double Measure(double duration, Func<int> step)
{
    var stop = Stopwatch.StartNew();
    var n = 0;
    while (stop.Elapsed.TotalSeconds < duration) n += step();
    return n / stop.Elapsed.TotalSeconds;
}

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

static string FindRepositoryRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "Services.sln"))) return dir.FullName;
    }
    throw new InvalidOperationException("Run from inside the repository (Services.sln not found above the app directory).");
}

using System.Diagnostics;
using Google.Protobuf;
using Graft.Launcher;
using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Reliability.Tests;

/// <summary>A backbone swap under load: two backbone processes of different profiles (resnet18, then resnet18-int8
/// joining) behind one Gateway address, one HeadService, real processes throughout. Its own stack, because the suite's
/// shared stack serves one backbone.</summary>
public sealed class RollingUpgradeTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const string Head = "kind";
    private static readonly string[] Classes = ["bag", "dress", "sneaker", "trouser"];
    private static readonly TimeSpan Ready = ReliabilityStack.ReadyTimeout;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_backbone_swap_under_predict_load_fails_no_call_and_every_answer_comes_from_the_version_of_its_features()
    {
        var work = Directory.CreateTempSubdirectory("graft-rolling-").FullName;
        var token = "roll-admin-" + Guid.NewGuid().ToString("N");
        var admin = ServiceStack.Bearer(token);
        var processes = new List<ServiceProcess>();
        ServiceProcess Add(GraftService service, Dictionary<string, string> environment)
        {
            var process = TestProcesses.Create(service, environment);
            processes.Add(process);
            return process;
        }
        try
        {
            var fp32 = Add(GraftService.Backbone, new() { ["Graft__Backbone__Device"] = "cpu" });
            var int8 = Add(GraftService.Backbone, new()
            {
                ["Graft__Backbone__Device"] = "cpu",
                ["Graft__Backbone__Profile"] = "resnet18-int8",
                ["Graft__Backbone__CalibrationImages"] = "4",
                ["Graft__Backbone__QuantizedCacheDirectory"] = Path.Combine(work, "int8-cache"),
            });
            var heads = Add(GraftService.Heads, new()
            {
                ["Graft__Heads__RegistryPath"] = Path.Combine(work, "registry"),
                ["Graft__Heads__TrainingThreads"] = "1",
            });
            // Both replicas behind one address from the start: the int8 one is simply not up yet, as a new pod before it is ready.
            var gateway = Add(GraftService.Gateway, new()
            {
                ["Graft__Gateway__BackboneAddress"] = $"{fp32.GrpcAddress},{int8.GrpcAddress}",
                ["Graft__Gateway__HeadsAddress"] = heads.GrpcAddress.ToString(),
                ["Graft__Gateway__AdminToken"] = token,
                ["Graft__Gateway__Datasets__Path"] = Path.Combine(work, "datasets"),
                ["Graft__Gateway__MaxReconnectBackoff"] = "00:00:00.500",
            });
            await Task.WhenAll(fp32.StartAsync(Ready), heads.StartAsync(Ready));
            await gateway.StartAsync(Ready);
            var client = new V1.Gateway.GatewayClient(gateway.Channel);
            var clock = Stopwatch.StartNew();

            var train = SampleImages.Load("train", Classes).GroupBy(s => s.Label).SelectMany(g => g.Take(10)).ToList();
            var v1 = await TrainAsync(client, admin, train);
            var fp32Fingerprint = v1.BackboneFingerprint;
            var images = SampleImages.Load("test", Classes).Select(s => ByteString.CopyFrom(s.ReadBytes())).ToList();

            // A short pause per call keeps the load from starving the int8 replica's start-up (its quantization) on a small machine.
            await using var load = new PredictLoad(client, [], images, [Head], workers: 3, Deadline, pause: TimeSpan.FromMilliseconds(20));
            await load.WaitForCallsAsync(15, TimeSpan.FromSeconds(60));
            var joinStarted = load.Elapsed;
            await int8.StartAsync(Ready);
            var int8Fingerprint = (await new V1.Backbone.BackboneClient(int8.Channel).DescribeAsync(new DescribeBackboneRequest(), deadline: DateTime.UtcNow + Deadline)).Fingerprint;
            var joined = load.Elapsed;
            // The int8 replica takes its share of Extracts now, for a head that has no int8 version yet.
            await load.WaitForCallsAsync(30, TimeSpan.FromSeconds(90));
            var int8ExtractsBeforeRetrain = (await int8.ScrapeMetricsAsync(DateTime.UtcNow)).Sum("graft_rpc_server_requests_total", ("rpc_method", "/graft.v1.Backbone/Extract"));

            var retrained = await RetrainAsync(client, admin, int8Fingerprint);
            var retrainedAt = load.Elapsed;
            await WaitForAsync(load, o => o.Reply?.BackboneFingerprint == int8Fingerprint && o.Started > retrainedAt, TimeSpan.FromSeconds(60));

            await fp32.StopAsync(TimeSpan.FromSeconds(20));
            var drained = load.Elapsed;
            await load.WaitForCallsAsync(30, TimeSpan.FromSeconds(90));
            var outcomes = await load.StopAsync();

            var failed = outcomes.Where(o => o.Code != StatusCode.OK).ToList();
            var answered = outcomes.Where(o => o.Reply is not null).ToList();
            var byFingerprint = answered.GroupBy(o => o.Reply!.BackboneFingerprint).ToDictionary(g => g.Key, g => g.Count());
            var figure = $"rolling upgrade: {outcomes.Count} Predict calls over {load.Elapsed.TotalSeconds:0} s, {failed.Count} failed; " +
                $"answers by backbone: {string.Join(", ", byFingerprint.Select(kv => $"{kv.Key} {kv.Value}"))}; int8 replica joined after " +
                $"{(joined - joinStarted).TotalSeconds:0.0} s of start-up (quantization included) and served {int8ExtractsBeforeRetrain} Extract calls before its head version existed; " +
                $"retrain on int8 published v{retrained.Version} {(retrainedAt - joined).TotalSeconds:0.0} s after it joined; " +
                $"{outcomes.Count(o => o.Started > drained)} calls after the fp32 replica was stopped; p99 {PredictLoad.Quantile(outcomes, 0.99):0} ms; test {clock.Elapsed.TotalSeconds:0} s";
            FigureLog.Add(figure);
            output.WriteLine(figure);

            Assert.True(failed.Count == 0, $"{failed.Count} calls failed, first: {failed.FirstOrDefault()?.Code} {failed.FirstOrDefault()?.Detail}\n{Diagnostics(processes)}");
            Assert.NotEqual(fp32Fingerprint, int8Fingerprint);
            Assert.Equal(int8Fingerprint, retrained.BackboneFingerprint);
            Assert.All(answered, o => Assert.Equal(o.Reply!.BackboneFingerprint == fp32Fingerprint ? v1.Version : retrained.Version, o.Reply!.Results.Single().Version));
            Assert.True(int8ExtractsBeforeRetrain > 0, "the int8 replica never took an Extract before its head version existed");
            Assert.True(byFingerprint.GetValueOrDefault(int8Fingerprint) > 0 && byFingerprint.GetValueOrDefault(fp32Fingerprint) > 0);
            Assert.All(outcomes.Where(o => o.Started > drained + TimeSpan.FromSeconds(1)), o => Assert.Equal(int8Fingerprint, o.Reply!.BackboneFingerprint));
            var listed = await client.GetHeadAsync(new GetHeadRequest { Name = Head, BackboneFingerprint = int8Fingerprint }, deadline: DateTime.UtcNow + Deadline);
            Assert.Equal([(int8Fingerprint, retrained.Version), (fp32Fingerprint, v1.Version)],
                listed.Backbones.Select(b => (b.BackboneFingerprint, b.ServingVersion)).OrderBy(b => b.BackboneFingerprint, StringComparer.Ordinal));
        }
        finally
        {
            foreach (var process in Enumerable.Reverse(processes))
            {
                await process.DisposeAsync();
            }
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
                // Best effort.
            }
        }
    }

    private static async Task<HeadVersionInfo> TrainAsync(V1.Gateway.GatewayClient client, Metadata admin, IReadOnlyList<SampleImages.Sample> train)
    {
        using var call = client.TrainHead(admin, deadline: DateTime.UtcNow.AddMinutes(10));
        await call.RequestStream.WriteAsync(new TrainHeadRequest { Spec = new HeadSpec { Name = Head, Kind = HeadKind.Classifier, Epochs = 10, Seed = 7 } });
        foreach (var sample in train)
        {
            await call.RequestStream.WriteAsync(new TrainHeadRequest { Example = new LabelledImage { Image = ByteString.CopyFrom(sample.ReadBytes()), Label = sample.Label } });
        }
        await call.RequestStream.CompleteAsync();
        return await PublishedAsync(call.ResponseStream);
    }

    private static async Task<HeadVersionInfo> RetrainAsync(V1.Gateway.GatewayClient client, Metadata admin, string fingerprint)
    {
        using var call = client.RetrainHead(new RetrainHeadRequest { Name = Head, BackboneFingerprint = fingerprint }, admin, deadline: DateTime.UtcNow.AddMinutes(10));
        return await PublishedAsync(call.ResponseStream);
    }

    private static async Task<HeadVersionInfo> PublishedAsync(IAsyncStreamReader<TrainProgress> progress)
    {
        HeadVersionInfo? published = null;
        await foreach (var step in progress.ReadAllAsync())
        {
            published = step.Phase == TrainPhase.Published ? step.Published : published;
        }
        return published ?? throw new InvalidOperationException("training ended without publishing a version");
    }

    private static async Task WaitForAsync(PredictLoad load, Func<CallOutcome, bool> seen, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (!load.Outcomes.Any(seen) && clock.Elapsed < limit)
        {
            await Task.Delay(100);
        }
    }

    private static string Diagnostics(IEnumerable<ServiceProcess> processes) =>
        string.Join("\n", processes.Select(p => $"----- {p.Service} :{p.GrpcPort} -----\n{p.OutputText(40)}"));
}

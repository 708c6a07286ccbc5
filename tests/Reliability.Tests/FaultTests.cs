using System.Diagnostics;
using System.Text.RegularExpressions;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>Processes killed, files damaged and versions switched while clients keep calling. Each test restores
/// what it broke, so the next one starts from a serving stack.</summary>
[Collection(ReliabilityCollection.Name)]
public sealed class FaultTests(ReliabilityFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan LoadDeadline = TimeSpan.FromSeconds(10);
    private ReliabilityStack Stack => fixture.Stack;

    [Fact]
    public async Task Killing_the_backbone_under_load_fails_fast_with_unavailable_and_recovers_within_5_s_of_its_restart()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var headsBefore = await ListAsync();
        var gatewayPid = Stack.Gateway.ProcessId;
        await using var load = NewLoad(workers: 3);
        await load.WaitForCallsAsync(12, TimeSpan.FromSeconds(60));

        // Act: SIGKILL the backbone and keep the load on it until the breaker has opened (its sampling window may still
        // hold many earlier successes), then restart it on the same port.
        var killedAt = load.Elapsed;
        Stack.Backbone.Kill();
        // Wait until the open breaker has answered several calls at once, so its latency is measured on more than one.
        await Eventually.TrueAsync(() => load.Outcomes.Count(o => o.Detail.Contains("not calling it", StringComparison.Ordinal)) >= 3,
            TimeSpan.FromSeconds(30), "three calls rejected by the open breaker");
        await Stack.Backbone.StartAsync(ReliabilityStack.ReadyTimeout);
        var readyAt = load.Elapsed;
        await WaitForSuccessStartedAfterAsync(load, readyAt, TimeSpan.FromSeconds(30));
        await load.WaitForCallsAsync(6, TimeSpan.FromSeconds(10));
        var outcomes = await load.StopAsync();

        // Assert
        var during = outcomes.Where(o => o.Started >= killedAt).ToList();
        var failures = during.Where(o => o.Code != StatusCode.OK).ToList();
        var breakerRejections = failures.Where(f => f.Detail.Contains("not calling it", StringComparison.Ordinal)).ToList();
        var firstRecovered = during.First(o => o.Code == StatusCode.OK && o.Started >= readyAt);
        Assert.NotEmpty(failures);
        Assert.All(outcomes.Where(o => o.Code != StatusCode.OK), f => Assert.True(f.Code == StatusCode.Unavailable, $"{f.Code}: {f.Detail}"));
        Assert.All(outcomes, o => Assert.True(o.Took < LoadDeadline, $"a call took {o.Took.TotalSeconds:0.0} s, past its {LoadDeadline.TotalSeconds} s deadline ({o.Code})"));
        Assert.NotEmpty(breakerRejections);
        Assert.True(PredictLoad.Quantile(breakerRejections, 0.5) < 1000, "an open breaker answers at once");
        var recovery = firstRecovered.Started + firstRecovered.Took - readyAt;
        Assert.True(recovery < TimeSpan.FromSeconds(5), $"success came back {recovery.TotalSeconds:0.0} s after the backbone was ready");
        Assert.Equal(gatewayPid, Stack.Gateway.ProcessId);
        Assert.Equal(headsBefore, await ListAsync());
        var leaks = failures.Where(f => f.Detail.Contains("Exception", StringComparison.Ordinal) || f.Detail.Contains($":{Stack.Backbone.GrpcPort}", StringComparison.Ordinal)).ToList();

        Report("backbone SIGKILL under load", outcomes,
            $"failed after kill {failures.Count} (all UNAVAILABLE; {breakerRejections.Count} rejected by the open breaker, median {PredictLoad.Quantile(breakerRejections, 0.5):0} ms, " +
            $"slowest failure {failures.Max(f => f.Took.TotalMilliseconds):0} ms); recovered {during.Count(o => o.Code == StatusCode.OK && o.Started >= readyAt)} calls, " +
            $"first success {recovery.TotalSeconds:0.00} s after restart; heads lost 0; " +
            $"{leaks.Count} failure messages named an exception type or the backbone's internal address");
        Assert.True(leaks.Count == 0, $"{leaks.Count} client-visible messages expose internals, e.g. \"{leaks.FirstOrDefault()?.Detail}\"");
    }

    [Fact]
    public async Task Killing_one_of_two_head_replicas_under_load_loses_no_predict_visible_to_clients()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var retriesBefore = await HeadsDownstreamAsync("Unavailable");
        await using var load = NewLoad(workers: 3);
        await load.WaitForCallsAsync(12, TimeSpan.FromSeconds(60));

        // Act: SIGKILL replica A, keep calling through B, restart A and keep calling through both.
        var killedAt = load.Elapsed;
        Stack.HeadsA.Kill();
        await load.WaitForCallsAsync(40, TimeSpan.FromSeconds(20));
        await Stack.HeadsA.StartAsync(ReliabilityStack.ReadyTimeout);
        await load.WaitForCallsAsync(30, TimeSpan.FromSeconds(20));
        var outcomes = await load.StopAsync();

        // Assert: the retry policy absorbs the dead replica; clients see no failure.
        var failures = outcomes.Where(o => o.Code != StatusCode.OK).ToList();
        var absorbed = await HeadsDownstreamAsync("Unavailable") - retriesBefore;
        var kinds = failures.GroupBy(f => Regex.Replace(f.Detail, @"\d+", "#")).Select(g => $"{g.Count()} x \"{g.Key}\"");
        Report("one of two HeadService replicas SIGKILLed under load", outcomes,
            $"client-visible failures {failures.Count}" +
            (failures.Count > 0 ? $" ({string.Join("; ", kinds)}, started {(failures.Min(f => f.Started) - killedAt).TotalSeconds:0.0}-{(failures.Max(f => f.Started) - killedAt).TotalSeconds:0.0} s after the kill)" : "") +
            $"; downstream UNAVAILABLE attempts absorbed by retries {absorbed}");
        // Seen once in ~4 full runs under heavy parallel load and not reproduced since: the services' own lines say why.
        Assert.True(failures.Count == 0, $"{failures.Count} failures reached clients, e.g. {failures.FirstOrDefault()?.Code}: {failures.FirstOrDefault()?.Detail}\n{Stack.Diagnostics(80)}");
        Assert.All(outcomes, o => Assert.Equal(ReliabilityFixture.Classifier, o.Reply!.Results.Single().Head));
    }

    [Fact]
    public async Task Killing_a_head_replica_mid_training_publishes_nothing_and_the_previous_version_serves_until_a_retrain_succeeds()
    {
        // Arrange: the features of the training images, straight from the backbone, for training on replica A.
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var before = await GetHeadAsync(ReliabilityFixture.Classifier);
        var rows = await FeatureRowsAsync(fixture.Train);
        var trainer = ReliabilityStack.HeadsClient(Stack.HeadsA);
        using var killed = new CancellationTokenSource();
        var epochsSeen = 0;

        // Act: a long training job on replica A, SIGKILLed a few epochs in.
        var job = Task.Run(() => TrainOnReplicaAsync(trainer, rows.Spec(ReliabilityFixture.Classifier, epochs: 5000), rows.Rows, step =>
        {
            if (step.Phase == TrainPhase.Training && Interlocked.Increment(ref epochsSeen) == 5)
            {
                Stack.HeadsA.Kill();
            }
        }));
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => job);
        var duringOutage = await GetHeadAsync(ReliabilityFixture.Classifier);
        var servedDuringOutage = await fixture.PredictAsync(fixture.TestImage(), ReliabilityFixture.Classifier);
        await Stack.HeadsA.StartAsync(ReliabilityStack.ReadyTimeout);
        var afterRestart = await ServedVersionsAsync(ReliabilityFixture.Classifier);
        var versionFolders = Directory.GetDirectories(Path.Combine(Stack.RegistryDirectory, ReliabilityFixture.Classifier))
            .Select(d => Path.GetFileName(d)).Where(d => d.StartsWith('v')).Order().ToList();
        var retrained = await TrainOnReplicaAsync(trainer, rows.Spec(ReliabilityFixture.Classifier, epochs: 5), rows.Rows, _ => { });

        // Assert
        Assert.True(epochsSeen >= 5, $"the job was killed mid-training ({epochsSeen} epochs seen); {failure.Message}");
        Assert.Equal(VersionsOf(before), VersionsOf(duringOutage));
        Assert.Equal(before.ActiveVersion, servedDuringOutage.Results.Single().Version);
        Assert.All(afterRestart, v => Assert.Equal(before.ActiveVersion, v));
        Assert.Equal(before.Versions.Select(v => $"v{v.Version}").Order(), versionFolders);
        var published = retrained.Last();
        Assert.Equal(TrainPhase.Published, published.Phase);
        Assert.Equal(before.Versions.Max(v => v.Version) + 1, published.Published.Version);
        await WaitUntilEveryReplicaServesAsync(ReliabilityFixture.Classifier, published.Published.Version, TimeSpan.FromSeconds(10));
        Figures($"HeadService SIGKILLed after {epochsSeen} epochs of a 5000-epoch job: client saw {(failure is RpcException r ? r.StatusCode.ToString() : failure.GetType().Name)}; " +
            $"versions before/after {string.Join(",", VersionsOf(before))} / {string.Join(",", VersionsOf(duringOutage))}; " +
            $"v{before.ActiveVersion} served during the outage and on both replicas after restart; retrain published v{published.Published.Version}; lost 0");
    }

    [Fact]
    public async Task Publishing_and_rolling_back_a_version_under_load_causes_no_error_and_every_replica_switches_within_5_s()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var old = (await GetHeadAsync(ReliabilityFixture.Classifier)).ActiveVersion;
        await using var load = NewLoad(workers: 3);
        await load.WaitForCallsAsync(12, TimeSpan.FromSeconds(60));

        // Act 1: publish a new version through the gateway while the load runs.
        var progress = await fixture.TrainAsync(new HeadSpec { Name = ReliabilityFixture.Classifier, Kind = HeadKind.Classifier, Epochs = 5, Seed = 11 },
            fixture.Train.Take(40).Select(ReliabilityFixture.Labelled));
        var published = progress.Last().Published.Version;
        var publishSwitch = await WaitUntilEveryReplicaServesAsync(ReliabilityFixture.Classifier, published, TimeSpan.FromSeconds(30));

        // Act 2: roll back to the old version through the gateway.
        await fixture.Client.ActivateHeadAsync(new ActivateVersionRequest { Name = ReliabilityFixture.Classifier, Version = old },
            Stack.AdminHeaders, DateTime.UtcNow + ReliabilityFixture.CallDeadline);
        var rollbackSwitch = await WaitUntilEveryReplicaServesAsync(ReliabilityFixture.Classifier, old, TimeSpan.FromSeconds(30));
        await load.WaitForCallsAsync(10, TimeSpan.FromSeconds(20));
        var outcomes = await load.StopAsync();

        // Assert
        var failures = outcomes.Where(o => o.Code != StatusCode.OK).ToList();
        var versionsSeen = outcomes.Where(o => o.Reply is not null).Select(o => o.Reply!.Results.Single().Version).Distinct().Order().ToList();
        Report("publish + rollback under load", outcomes,
            $"versions served {string.Join(",", versionsSeen)}; every replica served v{published} {publishSwitch.TotalSeconds:0.00} s after publish and v{old} {rollbackSwitch.TotalSeconds:0.00} s after rollback");
        Assert.Empty(failures);
        Assert.Contains(published, versionsSeen);
        Assert.True(publishSwitch < TimeSpan.FromSeconds(5), $"replicas took {publishSwitch.TotalSeconds:0.0} s to serve the new version");
        Assert.True(rollbackSwitch < TimeSpan.FromSeconds(5), $"replicas took {rollbackSwitch.TotalSeconds:0.0} s to serve the rolled-back version");
    }

    [Fact]
    public async Task A_truncated_or_corrupt_weights_file_is_reported_and_the_old_version_keeps_serving()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var name = ReliabilityFixture.Regressor;
        var head = await GetHeadAsync(name);
        var good = head.ActiveVersion;
        var headDir = Path.Combine(Stack.RegistryDirectory, name);
        var truncated = head.Versions.Max(v => v.Version) + 1;
        var corrupt = truncated + 1;

        foreach (var (version, damage) in new (int, Func<byte[], byte[]>)[]
        {
            (truncated, w => w[..(w.Length / 2)]),
            (corrupt, w => { var c = (byte[])w.Clone(); for (var i = c.Length / 3; i < c.Length / 3 + 64; i++) c[i] ^= 0x5A; return c; }),
        })
        {
            // Act: place a damaged copy of the good version in the registry and point `active` at it, as a bad
            // deployment or a failing disk would.
            CopyVersionDamaged(headDir, good, version, damage);
            PointActive(headDir, version);
            await WaitUntilEveryReplicaSeesPointerAsync(name, version, TimeSpan.FromSeconds(15));
            var served = new List<int>();
            for (var i = 0; i < 6; i++)
            {
                served.Add((await fixture.PredictAsync(fixture.TestImage(i), name)).Results.Single().Version);
            }
            served.AddRange(await ServedVersionsAsync(name)); // each replica, asked directly
            var reports = new List<HeadVersionInfo>();
            foreach (var replica in Stack.HeadReplicas)
            {
                var info = await ReliabilityStack.HeadsClient(replica).GetHeadAsync(new GetHeadRequest { Name = name }, deadline: DateTime.UtcNow + ReliabilityFixture.CallDeadline);
                Assert.Equal(version, info.PointerVersion);
                Assert.Equal(good, info.ActiveVersion);
                reports.Add(info.Versions.Single(v => v.Version == version));
            }

            // Assert: every answer came from the good version; each replica lists the damaged one with its load error.
            Assert.All(served, v => Assert.Equal(good, v));
            Assert.All(reports, r => Assert.False(string.IsNullOrEmpty(r.LoadError), $"v{version} is not reported as unusable: {r}"));
            Assert.All(Stack.HeadReplicas, r => Assert.Contains(r.Output, l => l.Contains($"{name} version {version} is unusable", StringComparison.Ordinal)));
            var reported = reports[0];
            Figures($"{(version == truncated ? "truncated" : "corrupt (same size, 64 bytes flipped)")} weights as v{version} made active: " +
                $"{served.Count} predicts all served by v{good}; reported as \"{reported.LoadError}\"");
        }

        // Clean up: point back at the good version and delete the damaged ones, through the gateway.
        await fixture.Client.ActivateHeadAsync(new ActivateVersionRequest { Name = name, Version = good }, Stack.AdminHeaders, DateTime.UtcNow + ReliabilityFixture.CallDeadline);
        foreach (var v in new[] { truncated, corrupt })
        {
            await fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = name, Version = v }, Stack.AdminHeaders, DateTime.UtcNow + ReliabilityFixture.CallDeadline);
        }
    }

    [Fact]
    public async Task Restarting_the_gateway_leaves_backbone_and_heads_untouched_and_clients_reconnect()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var pids = new[] { Stack.Backbone, Stack.HeadsA, Stack.HeadsB }.Select(p => p.ProcessId).ToList();
        var headsBefore = await ListAsync();
        await using var load = NewLoad(workers: 2);
        await load.WaitForCallsAsync(8, TimeSpan.FromSeconds(60));

        // Act
        var killedAt = load.Elapsed;
        await Stack.Gateway.RestartAsync(ReliabilityStack.ReadyTimeout);
        var readyAt = load.Elapsed;
        await WaitForSuccessStartedAfterAsync(load, readyAt, TimeSpan.FromSeconds(30));
        await load.WaitForCallsAsync(8, TimeSpan.FromSeconds(10));
        var outcomes = await load.StopAsync();

        // Assert
        var failures = outcomes.Where(o => o.Code != StatusCode.OK).ToList();
        // A call in flight at the kill fails too; none may fail that started after the gateway was back.
        Assert.All(failures, f => Assert.True(f.Code == StatusCode.Unavailable && f.Started + f.Took >= killedAt && f.Started <= readyAt, $"{f.Code} at {f.Started}: {f.Detail}"));
        Assert.Equal(pids, new[] { Stack.Backbone, Stack.HeadsA, Stack.HeadsB }.Select(p => p.ProcessId).ToList());
        Assert.Equal(headsBefore, await ListAsync());
        Assert.Contains(outcomes, o => o.Code == StatusCode.OK && o.Started > readyAt);
        Report("gateway restarted under load", outcomes,
            $"failed only while it was down: {failures.Count} UNAVAILABLE; the same client channels reconnected; backbone and heads PIDs unchanged");
    }

    // ---- helpers ----

    private PredictLoad NewLoad(int workers) =>
        new(fixture.Client, Stack.PredictHeaders, Enumerable.Range(0, 8).Select(fixture.TestImage).ToList(), [ReliabilityFixture.Classifier],
            workers, LoadDeadline, pause: TimeSpan.FromMilliseconds(20));

    private static async Task WaitForSuccessStartedAfterAsync(PredictLoad load, TimeSpan after, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit && !load.Outcomes.Any(o => o.Code == StatusCode.OK && o.Started >= after))
        {
            await Task.Delay(50);
        }
    }

    private async Task<List<string>> ListAsync() =>
        (await fixture.Client.ListHeadsAsync(new ListHeadsRequest(), Stack.PredictHeaders, DateTime.UtcNow + ReliabilityFixture.CallDeadline))
            .Heads.Select(h => $"{h.Name}: active v{h.ActiveVersion}, versions {string.Join(",", VersionsOf(h))}").ToList();

    private Task<HeadInfo> GetHeadAsync(string name) =>
        fixture.Client.GetHeadAsync(new GetHeadRequest { Name = name }, Stack.PredictHeaders, DateTime.UtcNow + ReliabilityFixture.CallDeadline).ResponseAsync;

    private static List<int> VersionsOf(HeadInfo head) => head.Versions.Select(v => v.Version).ToList();

    private async Task<double> HeadsDownstreamAsync(string status) =>
        (await Stack.Gateway.ScrapeMetricsAsync()).Sum("graft_gateway_downstream_calls_total", ("downstream", "heads"), ("status", status));

    /// <summary>The version each replica serves for <paramref name="head"/>, asked directly (not through the gateway).</summary>
    private async Task<List<int>> ServedVersionsAsync(string head)
    {
        var features = await Stack.BackboneClient.ExtractAsync(new ExtractRequest { Image = fixture.TestImage() }, deadline: DateTime.UtcNow + ReliabilityFixture.CallDeadline);
        var versions = new List<int>();
        foreach (var replica in Stack.HeadReplicas)
        {
            var reply = await ReliabilityStack.HeadsClient(replica).PredictAsync(new HeadPredictRequest
            {
                Features = { features.Features }, BackboneFingerprint = features.Fingerprint, Heads = { head },
            }, deadline: DateTime.UtcNow + ReliabilityFixture.CallDeadline);
            versions.Add(reply.Outputs.Single().Version);
        }
        return versions;
    }

    private async Task<TimeSpan> WaitUntilEveryReplicaServesAsync(string head, int version, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        var seen = new List<int>();
        while (clock.Elapsed < limit)
        {
            seen = await ServedVersionsAsync(head);
            if (seen.All(v => v == version))
            {
                return clock.Elapsed;
            }
            await Task.Delay(50);
        }
        throw new TimeoutException($"replicas serve {string.Join(",", seen)} of {head}, not v{version}, after {limit.TotalSeconds} s");
    }

    private sealed record TrainingRows(IReadOnlyList<FeatureRow> Rows, string Fingerprint)
    {
        public HeadSpec Spec(string name, int epochs) =>
            new() { Name = name, Kind = HeadKind.Classifier, Epochs = epochs, Seed = 3, BackboneFingerprint = Fingerprint, ValidationFraction = 0.2 };
    }

    private async Task<TrainingRows> FeatureRowsAsync(IEnumerable<SampleImages.Sample> samples)
    {
        var rows = new List<FeatureRow>();
        var fingerprint = "";
        foreach (var s in samples)
        {
            var reply = await Stack.BackboneClient.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(s.ReadBytes()) },
                deadline: DateTime.UtcNow + ReliabilityFixture.CallDeadline);
            fingerprint = reply.Fingerprint;
            rows.Add(new FeatureRow { Features = { reply.Features }, Label = s.Label });
        }
        return new TrainingRows(rows, fingerprint);
    }

    private static async Task<List<TrainProgress>> TrainOnReplicaAsync(Heads.HeadsClient client, HeadSpec spec, IReadOnlyList<FeatureRow> rows, Action<TrainProgress> onStep)
    {
        using var call = client.Train(deadline: DateTime.UtcNow.AddMinutes(5));
        await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = spec });
        foreach (var chunk in rows.Chunk(64))
        {
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = new FeatureRows { Rows = { chunk } } });
        }
        await call.RequestStream.CompleteAsync();
        var steps = new List<TrainProgress>();
        await foreach (var step in call.ResponseStream.ReadAllAsync())
        {
            steps.Add(step);
            onStep(step);
        }
        return steps;
    }

    /// <summary>Copies version <paramref name="from"/> to a new version folder with damaged weights, renaming a complete
    /// temporary folder into place (as a publish does) so no replica sees it half-copied.</summary>
    private static void CopyVersionDamaged(string headDir, int from, int to, Func<byte[], byte[]> damage)
    {
        var source = Path.Combine(headDir, $"v{from}");
        var temp = Path.Combine(headDir, $".tmp-reliability-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        var manifest = JsonNode.Parse(File.ReadAllBytes(Path.Combine(source, "head.json")))!;
        manifest["version"] = to;
        File.WriteAllText(Path.Combine(temp, "head.json"), manifest.ToJsonString());
        var weightsFile = (string)manifest["weightsFile"]!;
        File.WriteAllBytes(Path.Combine(temp, weightsFile), damage(File.ReadAllBytes(Path.Combine(source, weightsFile))));
        Directory.Move(temp, Path.Combine(headDir, $"v{to}"));
    }

    /// <summary>Replicas see registry changes within their rescan interval (1 s here) or at once through inotify.</summary>
    private async Task WaitUntilEveryReplicaSeesPointerAsync(string name, int version, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        foreach (var replica in Stack.HeadReplicas)
        {
            while ((await ReliabilityStack.HeadsClient(replica).GetHeadAsync(new GetHeadRequest { Name = name }, deadline: DateTime.UtcNow + ReliabilityFixture.CallDeadline)).PointerVersion != version)
            {
                Assert.True(clock.Elapsed < limit, $"replica :{replica.GrpcPort} did not see the active pointer move to v{version} within {limit.TotalSeconds} s");
                await Task.Delay(50);
            }
        }
    }

    private static void PointActive(string headDir, int version)
    {
        var temp = Path.Combine(headDir, $".tmp-active-{Guid.NewGuid():N}");
        File.WriteAllText(temp, $"{version}\n");
        File.Move(temp, Path.Combine(headDir, "active"), overwrite: true);
    }

    private void Report(string fault, IReadOnlyList<CallOutcome> outcomes, string details) =>
        Figures($"{fault}: {outcomes.Count} requests, served {outcomes.Count(o => o.Code == StatusCode.OK)}, failed {outcomes.Count(o => o.Code != StatusCode.OK)}; {details}");

    private void Figures(string line)
    {
        FigureLog.Add(line);
        output.WriteLine(line);
    }
}

using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;

namespace Graft.Heads.Tests.Integration;

/// <summary>Two in-process HeadService hosts on one registry folder behave as two replicas on a shared volume.</summary>
[Collection(FashionCollection.Name)]
public sealed class ReplicaTests(FashionFeatures fashion) : IAsyncLifetime
{
    private static readonly TimeSpan Visibility = TimeSpan.FromSeconds(5);
    private readonly TempRegistry _dir = new();
    private HeadsHost _a = null!;
    private HeadsHost _b = null!;

    public Task InitializeAsync()
    {
        _a = new HeadsHost(_dir.Path);
        _b = new HeadsHost(_dir.Path);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        _dir.Dispose();
    }

    private HeadSpec Spec(string name, long seed = 42) => new(TrainCalls.Spec(name, HeadKind.Classifier, fashion.Fingerprint, epochs: 5)) { Seed = seed };

    private List<FeatureRow> Rows => fashion.Train.Select(s => s.ClassRow()).ToList();

    private HeadPredictRequest Request(string head) => TrainCalls.Request(fashion.Fingerprint, fashion.Test[0].Features, head);

    private static async Task<int> ServedVersion(HeadsHost host, HeadPredictRequest request)
        => (await host.Client.PredictAsync(request)).Outputs[0].Version;

    [Fact]
    public async Task A_second_replica_serves_a_newly_published_version_within_five_seconds()
    {
        await _a.Client.TrainPublishedAsync(Spec("shared"), Rows);
        Assert.Equal(1, await ServedVersion(_b, Request("shared")));

        var v2 = await _a.Client.TrainPublishedAsync(Spec("shared", seed: 7), Rows);
        var waited = await TrainCalls.WaitUntilAsync(async () => await ServedVersion(_b, Request("shared")) == 2, TimeSpan.FromSeconds(20));

        Assert.Equal(2, v2.Version);
        Assert.True(waited < Visibility, $"replica B took {waited.TotalSeconds:F1} s to serve version 2");
    }

    [Fact]
    public async Task Rollback_makes_every_replica_serve_the_earlier_version_again()
    {
        await _a.Client.TrainPublishedAsync(Spec("rollback"), Rows);
        var v1Output = (await _a.Client.PredictAsync(Request("rollback"))).Outputs[0];
        await _a.Client.TrainPublishedAsync(Spec("rollback", seed: 7), Rows);
        await TrainCalls.WaitUntilAsync(async () => await ServedVersion(_b, Request("rollback")) == 2, TimeSpan.FromSeconds(20));

        var info = await _a.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "rollback", Version = 1 });
        var waited = await TrainCalls.WaitUntilAsync(async () => await ServedVersion(_b, Request("rollback")) == 1, TimeSpan.FromSeconds(20));

        Assert.Equal(1, info.ActiveVersion);
        Assert.Equal(1, await ServedVersion(_a, Request("rollback")));
        Assert.True(waited < Visibility, $"replica B took {waited.TotalSeconds:F1} s to roll back");
        Assert.Equal(v1Output, (await _b.Client.PredictAsync(Request("rollback"))).Outputs[0]);
    }

    [Fact]
    public async Task A_corrupt_new_version_is_reported_and_skipped_while_the_old_one_keeps_serving()
    {
        await _a.Client.TrainPublishedAsync(Spec("fragile"), Rows);
        Assert.Equal(1, await ServedVersion(_b, Request("fragile")));

        // Another writer publishes a v2 whose weights were damaged on disk (same length, so only the checksum can tell).
        var headDir = Path.Combine(_dir.Path, "fragile");
        var staging = Path.Combine(headDir, ".tmp-manual");
        Directory.CreateDirectory(staging);
        File.WriteAllText(Path.Combine(staging, "head.json"), File.ReadAllText(Path.Combine(headDir, "v1", "head.json")).Replace("\"version\": 1", "\"version\": 2"));
        var weights = File.ReadAllBytes(Path.Combine(headDir, "v1", "weights.safetensors"));
        weights[^100] ^= 0x5A;
        File.WriteAllBytes(Path.Combine(staging, "weights.safetensors"), weights);
        Directory.Move(staging, Path.Combine(headDir, "v2"));
        File.WriteAllText(Path.Combine(headDir, "active"), "2\n");

        await TrainCalls.WaitUntilAsync(async () => (await _b.Client.GetHeadAsync(new GetHeadRequest { Name = "fragile" })).PointerVersion == 2, TimeSpan.FromSeconds(20));
        var servedByB = await ServedVersion(_b, Request("fragile"));
        await using var fresh = new HeadsHost(_dir.Path);
        var servedByFresh = await ServedVersion(fresh, Request("fragile"));
        var info = await _b.Client.GetHeadAsync(new GetHeadRequest { Name = "fragile" });

        Assert.Equal(1, servedByB);
        Assert.Equal(1, servedByFresh);
        Assert.Equal(1, info.ActiveVersion);
        Assert.Equal(2, info.PointerVersion);
        Assert.Contains("SHA-256", info.Versions.Single(v => v.Version == 2).LoadError);
        Assert.Equal("", info.Versions.Single(v => v.Version == 1).LoadError);
    }

    [Fact]
    public async Task Features_from_another_backbone_are_refused_and_the_head_is_listed_as_stale()
    {
        await _a.Client.TrainPublishedAsync(Spec("fp"), Rows);
        var foreign = TrainCalls.Request("some-other-backbone", fashion.Test[0].Features, "fp");

        var detail = await RpcAssert.Fails(StatusCode.FailedPrecondition, async () => await _a.Client.PredictAsync(foreign));
        var againstOther = await _a.Client.ListHeadsAsync(new ListHeadsRequest { BackboneFingerprint = "some-other-backbone" });
        var againstCurrent = await _a.Client.ListHeadsAsync(new ListHeadsRequest { BackboneFingerprint = fashion.Fingerprint });

        Assert.Contains(fashion.Fingerprint, detail);
        Assert.Contains("some-other-backbone", detail);
        Assert.True(againstOther.Heads.Single().Stale);
        Assert.False(againstCurrent.Heads.Single().Stale);
    }

    [Fact]
    public async Task Features_of_the_wrong_dimension_are_refused()
    {
        await _a.Client.TrainPublishedAsync(Spec("dim"), Rows);
        var shorter = TrainCalls.Request(fashion.Fingerprint, fashion.Test[0].Features.Take(100), "dim");

        var detail = await RpcAssert.Fails(StatusCode.FailedPrecondition, async () => await _a.Client.PredictAsync(shorter));

        Assert.Contains($"takes {fashion.Dimension} features, but 100 were sent", detail);
    }
}

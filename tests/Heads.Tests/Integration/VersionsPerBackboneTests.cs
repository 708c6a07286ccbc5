using Graft.Heads.Registry;
using Graft.Heads.Serving;
using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;

namespace Graft.Heads.Tests.Integration;

/// <summary>An active version per backbone fingerprint, canary and shadow splits, through a real in-process HeadService
/// (real TorchSharp training on synthetic rows, real gRPC pipeline, real registry folder).</summary>
public sealed class VersionsPerBackboneTests : IAsyncLifetime
{
    private const string Fp32 = "resnet18:aaaaaaaaaaaaaaaa";
    private const string Int8 = "resnet18-int8:bbbbbbbbbbbbbbbb";
    private const int Dimension = 8;
    private readonly TempRegistry _dir = new();
    private HeadsHost _host = null!;

    public Task InitializeAsync()
    {
        _host = new HeadsHost(_dir.Path);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        _dir.Dispose();
    }

    private static List<FeatureRow> Rows(int seed = 1) => Synthetic.Classified(60, Dimension, 3, seed);

    private Task<HeadVersionInfo> Train(string name, string fingerprint, long seed = 42)
        => _host.Client.TrainPublishedAsync(new HeadSpec(TrainCalls.Spec(name, HeadKind.Classifier, fingerprint, epochs: 3)) { Seed = seed }, Rows());

    private static HeadPredictRequest Request(string fingerprint, string head, string requestId = "")
        => new(TrainCalls.Request(fingerprint, Rows(seed: 9)[0].Features, head)) { RequestId = requestId };

    private async Task<int> Served(string fingerprint, string head, string requestId = "")
        => (await _host.Client.PredictAsync(Request(fingerprint, head, requestId))).Outputs[0].Version;

    [Fact]
    public async Task Publishing_for_a_new_backbone_keeps_the_old_backbones_version_active_for_it()
    {
        await Train("kind", Fp32);

        await Train("kind", Int8);

        Assert.Equal(1, await Served(Fp32, "kind"));
        Assert.Equal(2, await Served(Int8, "kind"));
        var info = await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "kind", BackboneFingerprint = Int8 });
        Assert.False(info.Stale);
        Assert.Equal(2, info.ActiveVersion);
        // Listed in ordinal order of fingerprint.
        Assert.Equal([(Int8, 2, 2), (Fp32, 1, 1)], info.Backbones.Select(b => (b.BackboneFingerprint, b.Version, b.ServingVersion)));
    }

    [Fact]
    public async Task A_head_without_a_version_for_the_fingerprint_is_failed_precondition_or_reported_unready()
    {
        await Train("only-fp32", Fp32);

        var e = await Assert.ThrowsAsync<RpcException>(() => Served(Int8, "only-fp32"));
        var unready = await _host.Client.PredictAsync(new HeadPredictRequest(Request(Int8, "only-fp32")) { ReportUnready = true });
        var listed = await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "only-fp32", BackboneFingerprint = Int8 });

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains(Int8, e.Status.Detail);
        Assert.Empty(unready.Outputs);
        Assert.Equal("only-fp32", Assert.Single(unready.Unready).Head);
        Assert.Equal([Fp32], unready.Unready[0].ReadyFingerprints);
        Assert.True(listed.Stale);
    }

    [Fact]
    public async Task A_head_written_before_serving_json_keeps_serving_its_pointer_version_and_gains_a_second_backbone()
    {
        await Train("legacy", Fp32);
        await Train("legacy", Fp32, seed: 7);
        await _host.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "legacy", Version = 1 });
        // The layout of an older Graft: only the `active` pointer.
        File.Delete(Path.Combine(_dir.Path, "legacy", HeadServing.FileName));
        await using var restarted = new HeadsHost(_dir.Path);

        var before = (await restarted.Client.PredictAsync(Request(Fp32, "legacy"))).Outputs[0].Version;
        await restarted.Client.TrainPublishedAsync(new HeadSpec(TrainCalls.Spec("legacy", HeadKind.Classifier, Int8, epochs: 3)), Rows());

        Assert.Equal(1, before);
        Assert.Equal(1, (await restarted.Client.PredictAsync(Request(Fp32, "legacy"))).Outputs[0].Version);
        Assert.Equal(3, (await restarted.Client.PredictAsync(Request(Int8, "legacy"))).Outputs[0].Version);
    }

    [Fact]
    public async Task Activating_a_version_moves_the_pointer_of_its_own_backbone_only()
    {
        await Train("two", Fp32);
        await Train("two", Int8);
        await Train("two", Fp32, seed: 7);

        await _host.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "two", Version = 1 });

        Assert.Equal(1, await Served(Fp32, "two"));
        Assert.Equal(2, await Served(Int8, "two"));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _host.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = "two", Version = 2 }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
    }

    [Fact]
    public async Task A_canary_takes_its_share_deterministically_per_request_id_and_survives_a_restart()
    {
        await Train("canary", Fp32);
        await Train("canary", Fp32, seed: 7);
        await _host.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "canary", Version = 1 });

        var set = await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "canary", Version = 2, Mode = HeadSplitMode.Canary, Percent = 30 });
        const int n = 1000;
        var first = new int[n];
        for (var i = 0; i < n; i++)
        {
            first[i] = await Served(Fp32, "canary", "req-" + i);
        }
        await using var restarted = new HeadsHost(_dir.Path);
        var again = new int[n];
        for (var i = 0; i < n; i++)
        {
            again[i] = (await restarted.Client.PredictAsync(Request(Fp32, "canary", "req-" + i))).Outputs[0].Version;
        }

        Assert.Equal(HeadSplitMode.Canary, set.Split.Mode);
        Assert.Equal(1, set.Split.ActiveVersion);
        // Binomial(1000, 0.3): mean 300, sd 14.5; +-4.5 sd leaves a 1-in-100000 chance of a false failure.
        var canary = first.Count(v => v == 2);
        Assert.InRange(canary, 235, 365);
        Assert.Equal(first, again);
        var traffic = (await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "canary" })).Traffic;
        Assert.Equal(canary, traffic.Single(t => t.Role == VersionTraffic.Canary).Requests);
        Assert.Equal(n - canary, traffic.Single(t => t.Role == VersionTraffic.Active).Requests);
    }

    [Fact]
    public async Task Promote_makes_the_candidate_active_and_abort_leaves_the_active_version()
    {
        await Train("promote", Fp32);
        await Train("promote", Fp32, seed: 7);
        await Train("promote", Fp32, seed: 8);
        await _host.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "promote", Version = 1 });

        await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "promote", Version = 2, Mode = HeadSplitMode.Canary, Percent = 100 });
        var underCanary = await Served(Fp32, "promote");
        var aborted = await _host.Client.AbortSplitAsync(new HeadSplitActionRequest { Name = "promote" });
        var afterAbort = await Served(Fp32, "promote");
        await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "promote", Version = 3, Mode = HeadSplitMode.Canary, Percent = 5 });
        var promoted = await _host.Client.PromoteCandidateAsync(new HeadSplitActionRequest { Name = "promote" });

        Assert.Equal(2, underCanary);
        Assert.Null(aborted.Split);
        Assert.Equal(1, afterAbort);
        Assert.Null(promoted.Split);
        Assert.Equal(3, promoted.ActiveVersion);
        Assert.Equal(3, await Served(Fp32, "promote"));
    }

    [Fact]
    public async Task A_shadow_is_never_returned_and_its_agreement_is_measured()
    {
        await Train("shadow", Fp32);
        // Same data, same seed: the same network, so the shadow agrees on every request.
        await Train("shadow", Fp32);
        await Train("shadow", Int8);
        await _host.Client.ActivateVersionAsync(new ActivateVersionRequest { Name = "shadow", Version = 1 });

        await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "shadow", Version = 2, Mode = HeadSplitMode.Shadow });
        var served = new List<int>();
        foreach (var row in Rows(seed: 5).Take(40))
        {
            served.Add((await _host.Client.PredictAsync(TrainCalls.Request(Fp32, row.Features, "shadow"))).Outputs[0].Version);
        }
        // Features of the other backbone never reach the shadow.
        await Served(Int8, "shadow");
        var info = await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "shadow" });

        Assert.All(served, v => Assert.Equal(1, v));
        var shadow = info.Traffic.Single(t => t.Role == VersionTraffic.Shadow);
        Assert.Equal((2, 40L, 40L, 40L, 1.0), (shadow.Version, shadow.Requests, shadow.ShadowCompared, shadow.ShadowAgreed, shadow.ShadowAgreement));
        Assert.Equal(HeadSplitMode.Shadow, info.Split.Mode);
    }

    [Fact]
    public async Task Bad_splits_are_refused_with_the_reason()
    {
        await Train("bad", Fp32);
        await Train("bad", Int8);

        var percent = await Assert.ThrowsAsync<RpcException>(async () => await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "bad", Version = 2, Mode = HeadSplitMode.Canary, Percent = 150 }));
        var active = await Assert.ThrowsAsync<RpcException>(async () => await _host.Client.SetTrafficSplitAsync(new HeadSplitRequest { Name = "bad", Version = 2, Mode = HeadSplitMode.Shadow }));
        var none = await Assert.ThrowsAsync<RpcException>(async () => await _host.Client.PromoteCandidateAsync(new HeadSplitActionRequest { Name = "bad" }));

        Assert.Equal(StatusCode.InvalidArgument, percent.StatusCode);
        Assert.Equal(StatusCode.FailedPrecondition, active.StatusCode);
        Assert.Contains("already the active one", active.Status.Detail);
        Assert.Equal(StatusCode.FailedPrecondition, none.StatusCode);
    }

    [Fact]
    public void The_canary_side_of_a_request_id_is_stable_and_independent_per_head()
    {
        var a = Enumerable.Range(0, 2000).Select(i => HeadInference.TakesCanary("a", "id-" + i, 10)).ToList();
        var b = Enumerable.Range(0, 2000).Select(i => HeadInference.TakesCanary("b", "id-" + i, 10)).ToList();

        Assert.Equal(a, Enumerable.Range(0, 2000).Select(i => HeadInference.TakesCanary("a", "id-" + i, 10)));
        // Binomial(2000, 0.1): mean 200, sd 13.4; +-4.5 sd.
        Assert.InRange(a.Count(x => x), 140, 260);
        Assert.NotEqual(a, b);
    }
}

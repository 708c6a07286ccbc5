using Graft.Heads.Registry;
using Graft.Heads.Tails;
using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Graft.Heads.Tests.Tails;

/// <summary>Fine-tuning heads end to end through HeadService's gRPC API: real ResNet18 cut-point activations and tail,
/// real TorchSharp training (2 epochs on 12 images), the real registry on disk.</summary>
[Collection(FashionCutsCollection.Name)]
public sealed class FineTuningTests(FashionCuts cuts, ITestOutputHelper output) : IAsyncLifetime
{
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

    private async Task<HeadVersionInfo> TrainLastBlock(string name, HeadKind kind = HeadKind.Classifier, Action<HeadSpec>? edit = null)
    {
        var spec = FineTuneCalls.Spec(name, kind, cuts.Fingerprint);
        edit?.Invoke(spec);
        var rows = cuts.Train.Select(s => kind == HeadKind.Classifier ? s.ClassRow() : s.LengthRow()).ToList();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var progress = await _host.Client.TrainAsync(spec, cuts.Tail, rows);
        output.WriteLine($"{name}: trained {rows.Count} rows x 2 epochs at last-block in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Contains(progress, p => p.Message.Contains("Fine-tuning the backbone from last-block", StringComparison.Ordinal));
        Assert.Equal([1, 2], progress.Where(p => p.Phase == TrainPhase.Training && p.Epoch > 0).Select(p => p.Epoch));
        Assert.Equal(TrainPhase.Published, progress[^1].Phase);
        return progress[^1].Published;
    }

    [Fact]
    public async Task A_last_block_classifier_trained_over_grpc_serves_the_in_process_answer_and_survives_a_restart()
    {
        var published = await TrainLastBlock("shoes", edit: s => s.DepthReason = "3 images per class: fine-tuning the last block");

        Assert.Equal(HeadDepth.LastBlock, published.Spec.Depth);
        Assert.Equal("last-block", published.CutPoint);
        Assert.Equal([512L, 7, 7], published.CutShape);
        Assert.Equal("3 images per class: fine-tuning the last block", published.DepthReason);
        Assert.Equal(3e-4, published.Spec.TailLearningRate);
        Assert.Equal(512, published.InputDimension);
        var folder = Path.Combine(_dir.Path, "shoes", "v1");
        var trainedTail = File.ReadAllBytes(Path.Combine(folder, HeadManifest.TailFileName));
        Assert.NotEqual(cuts.TailOnnx, trainedTail);

        var image = cuts.Test[0];
        var request = image.Request(cuts.Fingerprint, "shoes");
        request.TopK = FashionCuts.Classes.Length;
        var served = (await _host.Client.PredictAsync(request)).Outputs.Single();

        var expected = InProcess(folder, image);
        Assert.Equal(1, served.Version);
        foreach (var score in served.Top)
        {
            Assert.Equal(expected[score.Label], score.Probability, 5);
        }
        // The retrained tail matters: the pretrained one under the same head layers answers differently.
        var pretrained = InProcess(folder, image, cuts.TailOnnx);
        Assert.True(served.Top.Any(s => Math.Abs(pretrained[s.Label] - s.Probability) > 1e-6), "the served answer does not depend on the retrained tail");

        await _host.DisposeAsync();
        _host = new HeadsHost(_dir.Path);
        var afterRestart = (await _host.Client.PredictAsync(request)).Outputs.Single();
        Assert.Equal(served.Top.Select(s => (s.Label, s.Probability)), afterRestart.Top.Select(s => (s.Label, s.Probability)));
        var info = await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "shoes" });
        Assert.Equal("last-block", info.Versions.Single().CutPoint);
        Assert.Equal("", info.Versions.Single().LoadError);
    }

    [Fact]
    public async Task A_fine_tuned_regressor_trains_and_predicts_a_length()
    {
        var published = await TrainLastBlock("length", HeadKind.Regressor);

        Assert.Equal(HeadKind.Regressor, published.Kind);
        Assert.True(published.Metrics.Mae > 0 && double.IsFinite(published.Metrics.Mae), $"MAE {published.Metrics.Mae}");
        var answer = (await _host.Client.PredictAsync(cuts.Test[1].Request(cuts.Fingerprint, "length"))).Outputs.Single();
        var lengths = cuts.Train.Select(s => s.Length).ToList();
        // Two epochs on 9 images do not make a good regressor, but its answer is a length on the training scale.
        Assert.InRange(answer.Value, lengths.Min() - 3 * (lengths.Max() - lengths.Min()), lengths.Max() + 3 * (lengths.Max() - lengths.Min()));
    }

    [Fact]
    public async Task A_corrupt_tail_gets_a_load_error_and_the_previous_version_keeps_serving()
    {
        await _host.Client.TrainPublishedAsync(new HeadSpec
        {
            Name = "shoes", Kind = HeadKind.Classifier, BackboneFingerprint = cuts.Fingerprint, Depth = HeadDepth.Probe, Epochs = 5,
        }, cuts.Train.Select(s => s.FinalClassRow()).ToList());
        await TrainLastBlock("shoes");
        var tailPath = Path.Combine(_dir.Path, "shoes", "v2", HeadManifest.TailFileName);
        var bytes = File.ReadAllBytes(tailPath);
        bytes[bytes.Length / 2] ^= 0x5A; // same size: only the checksum at load can tell
        File.WriteAllBytes(tailPath, bytes);
        await _host.DisposeAsync();
        _host = new HeadsHost(_dir.Path);

        var answer = (await _host.Client.PredictAsync(cuts.Test[0].Request(cuts.Fingerprint, "shoes"))).Outputs.Single();

        Assert.Equal(1, answer.Version);
        var info = await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "shoes" });
        Assert.Contains("tail file SHA-256", info.Versions.Single(v => v.Version == 2).LoadError);
        Assert.Equal(1, info.ActiveVersion);
        Assert.Equal(2, info.PointerVersion);
    }

    [Fact]
    public async Task Predict_without_cut_features_fails_naming_the_head_and_cut_point_or_lists_it_as_skipped()
    {
        await TrainLastBlock("shoes");
        var frozenOnly = TrainCalls.Request(cuts.Fingerprint, cuts.Test[0].Features, "shoes");

        var detail = await RpcAssert.Fails(StatusCode.FailedPrecondition, () => _host.Client.PredictAsync(frozenOnly).ResponseAsync);
        var all = await _host.Client.PredictAsync(TrainCalls.Request(cuts.Fingerprint, cuts.Test[0].Features));

        Assert.Contains("'shoes'", detail);
        Assert.Contains("'last-block'", detail);
        Assert.Empty(all.Outputs);
        Assert.Equal("shoes", all.Skipped.Single().Head);
        Assert.Contains("cut_features", all.Skipped.Single().Reason);
        var withCuts = await _host.Client.PredictAsync(cuts.Test[0].Request(cuts.Fingerprint));
        Assert.Equal("shoes", withCuts.Outputs.Single().Head);
        Assert.Empty(withCuts.Skipped);
    }

    [Fact]
    public async Task Views_of_one_image_validate_together_and_augmented_views_only_train()
    {
        // Each of the 12 images: its original row and one augmented view, sharing a source.
        var rows = cuts.Train.SelectMany((s, i) => new[] { s.FinalClassRow(), s.FinalClassRow() }
            .Select((row, view) => { row.Source = i + 1; row.Augmented = view == 1; return row; })).ToList();
        var spec = new HeadSpec
        {
            Name = "views", Kind = HeadKind.Classifier, BackboneFingerprint = cuts.Fingerprint, Depth = HeadDepth.Probe, Epochs = 3, ValidationFraction = 0.25,
        };

        var published = await _host.Client.TrainPublishedAsync(spec, rows);

        // 3 of the 12 images validate with their original row only; their views are dropped, the other 9 train with both rows.
        Assert.Equal(3, published.Metrics.ValidationRows);
        Assert.Equal(18, published.Metrics.TrainRows);
        Assert.Equal(HeadDepth.Probe, published.Spec.Depth);
        Assert.Empty(published.Spec.Hidden?.Sizes ?? []);
    }

    [Fact]
    public async Task Exporting_a_fine_tuned_version_is_refused_with_the_reason()
    {
        await TrainLastBlock("shoes");

        var detail = await RpcAssert.Fails(StatusCode.FailedPrecondition, async () =>
        {
            using var call = _host.Client.ExportVersion(new ExportVersionRequest { Name = "shoes" });
            await call.ResponseStream.ReadAllAsync().ToListAsync();
        });

        Assert.Contains("last-block", detail);
    }

    /// <summary>The version's answer computed here from its files: tail.onnx (or another tail) → standardise → head layers → softmax.</summary>
    private static Dictionary<string, double> InProcess(string folder, CutSample image, byte[]? tailOnnx = null)
    {
        var manifest = HeadManifest.Parse(File.ReadAllBytes(Path.Combine(folder, HeadManifest.FileName)));
        var weights = SafeTensors.Deserialize(File.ReadAllBytes(Path.Combine(folder, HeadManifest.WeightsFileName)));
        using var tail = OnnxTail.FromOnnx(tailOnnx ?? File.ReadAllBytes(Path.Combine(folder, HeadManifest.TailFileName)));
        tail.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = tail.call(tensor(image.Cut.Values.ToArray(), [1, .. image.Cut.Shape]))
            .sub(tensor(manifest.FeatureMean)).div(tensor(manifest.FeatureStd));
        for (var i = 0; i <= manifest.HiddenSizes.Count; i++)
        {
            var w = weights.Single(t => t.Name == $"layers.{i}.weight");
            var b = weights.Single(t => t.Name == $"layers.{i}.bias");
            x = x.matmul(tensor(w.Data, w.Shape).t()).add(tensor(b.Data, b.Shape));
            if (i < manifest.HiddenSizes.Count) x = nn.functional.relu(x);
        }
        var p = nn.functional.softmax(x, 1).data<float>().ToArray();
        return manifest.Labels.Select((label, i) => (label, i)).ToDictionary(t => t.label, t => (double)p[t.i]);
    }
}

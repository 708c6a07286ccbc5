using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;

namespace Graft.Heads.Tests.Integration;

/// <summary>Each bad request over gRPC gets its precise status and an actionable message, and publishes nothing.</summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private const string Fp = Tiny.Fingerprint;
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

    private async Task<string> TrainFails(StatusCode code, HeadSpec spec, List<FeatureRow> rows)
    {
        var detail = await RpcAssert.Fails(code, () => _host.Client.TrainAsync(spec, rows));
        Assert.Empty((await _host.Client.ListHeadsAsync(new ListHeadsRequest())).Heads);
        return detail;
    }

    [Fact]
    public async Task An_empty_training_set_is_invalid_argument()
        => Assert.Contains("empty", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Regressor, Fp), []));

    [Fact]
    public async Task A_classifier_with_one_class_is_invalid_argument()
        => Assert.Contains("at least two classes", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Classifier, Fp), Synthetic.Classified(20, 4, 1)));

    [Fact]
    public async Task A_NaN_feature_is_invalid_argument_naming_the_row()
    {
        var rows = Synthetic.Classified(20, 4, 2);
        rows[11].Features[0] = float.NaN;

        Assert.Contains("Row 11, feature 0 is NaN", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Classifier, Fp), rows));
    }

    [Fact]
    public async Task An_infinite_target_is_invalid_argument_naming_the_row()
    {
        var rows = Synthetic.Regressed(20, 4);
        rows[5].Value = double.PositiveInfinity;

        Assert.Contains("Row 5 has target", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Regressor, Fp), rows));
    }

    [Fact]
    public async Task A_row_of_the_wrong_dimension_is_invalid_argument_naming_the_row()
    {
        var rows = Synthetic.Regressed(20, 4);
        rows[9].Features.RemoveAt(0);

        Assert.Contains("Row 9 has 3 features but row 0 has 4", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Regressor, Fp), rows));
    }

    [Fact]
    public async Task Fewer_rows_than_the_validation_split_needs_is_invalid_argument()
        => Assert.Contains("too few for validation_fraction 0.5",
            await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Regressor, Fp, validation: 0.5), Synthetic.Regressed(1, 4)));

    [Fact]
    public async Task Epochs_above_the_cap_are_invalid_argument()
        => Assert.Contains("10000", await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("h", HeadKind.Regressor, Fp, epochs: 10_001), Synthetic.Regressed(20, 4)));

    [Fact]
    public async Task A_path_escaping_head_name_is_invalid_argument_everywhere()
    {
        await TrainFails(StatusCode.InvalidArgument, TrainCalls.Spec("../escape", HeadKind.Regressor, Fp), Synthetic.Regressed(20, 4));
        await RpcAssert.Fails(StatusCode.InvalidArgument, async () => await _host.Client.PredictAsync(TrainCalls.Request(Fp, [1f], "..")));
        await RpcAssert.Fails(StatusCode.InvalidArgument, async () => await _host.Client.GetHeadAsync(new GetHeadRequest { Name = "a/b" }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, async () => await _host.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = "..." }));
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(_dir.Path)!, "escape"));
    }

    [Fact]
    public async Task Rows_before_the_spec_are_invalid_argument()
    {
        using var call = _host.Client.Train();
        var rows = new FeatureRows();
        rows.Rows.AddRange(Synthetic.Regressed(2, 4));
        await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = rows });
        await call.RequestStream.CompleteAsync();

        var detail = await RpcAssert.Fails(StatusCode.InvalidArgument, async () => { await foreach (var _ in call.ResponseStream.ReadAllAsync()) { } });

        Assert.Contains("first Train message must be a HeadSpec", detail);
    }

    [Fact]
    public async Task A_predict_for_an_unknown_head_is_not_found_and_lists_the_existing_heads()
    {
        await _host.Client.TrainPublishedAsync(TrainCalls.Spec("known-one", HeadKind.Regressor, Fp, epochs: 2), Synthetic.Regressed(20, 4));

        var detail = await RpcAssert.Fails(StatusCode.NotFound, async () => await _host.Client.PredictAsync(TrainCalls.Request(Fp, Synthetic.Vector(4), "unknown")));

        Assert.Contains("'unknown'", detail);
        Assert.Contains("known-one", detail);
    }

    [Fact]
    public async Task A_predict_naming_more_than_64_heads_is_invalid_argument_stating_the_limit()
    {
        var names = Enumerable.Range(0, 65).Select(i => $"h{i}").ToArray();

        var detail = await RpcAssert.Fails(StatusCode.InvalidArgument, async () => await _host.Client.PredictAsync(TrainCalls.Request(Fp, Synthetic.Vector(4), names)));

        Assert.Contains("at most 64", detail);
    }

    [Fact]
    public async Task A_predict_with_a_NaN_feature_is_invalid_argument()
    {
        var detail = await RpcAssert.Fails(StatusCode.InvalidArgument, async () => await _host.Client.PredictAsync(TrainCalls.Request(Fp, [1f, float.NaN], "h")));

        Assert.Contains("features[1]", detail);
    }
}

using Google.Protobuf;
using Graft.Backbone.Model;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;

namespace Graft.Heads.Tests.Tails;

/// <summary>Every malformed fine-tuning request gets its precise status and a message naming what to change, and
/// publishes nothing.</summary>
[Collection(FashionCutsCollection.Name)]
public sealed class FineTuningBadInputTests(FashionCuts cuts) : IAsyncLifetime
{
    private readonly TempRegistry _dir = new();
    private HeadsHost _host = null!;

    public Task InitializeAsync()
    {
        // Room for two last-block rows, not three: the memory bound without sending 800 MB.
        _host = new HeadsHost(_dir.Path, new Dictionary<string, string?> { ["Graft:Heads:MaxTrainingValues"] = (2 * 25_088 + 100).ToString() });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<string> Fails(StatusCode code, HeadSpec spec, IEnumerable<TailGraphChunk> tail, IReadOnlyList<FeatureRow>? rows = null)
    {
        var detail = await RpcAssert.Fails(code, () => _host.Client.TrainAsync(spec, tail, rows ?? cuts.Train.Take(2).Select(s => s.ClassRow()).ToList()));
        Assert.Empty((await _host.Client.ListHeadsAsync(new ListHeadsRequest())).Heads);
        return detail;
    }

    private HeadSpec Spec(HeadDepth depth = HeadDepth.LastBlock) => FineTuneCalls.Spec("h", HeadKind.Classifier, cuts.Fingerprint, depth);

    [Fact]
    public async Task Auto_is_invalid_argument_saying_the_gateway_resolves_it()
        => Assert.Contains("Gateway resolves", await Fails(StatusCode.InvalidArgument, Spec(HeadDepth.Auto), []));

    [Fact]
    public async Task A_probe_with_hidden_layers_is_invalid_argument_naming_spec_hidden()
    {
        var spec = Spec(HeadDepth.Probe);
        spec.Hidden = new HiddenLayers { Sizes = { 64 } };

        Assert.Contains("spec.hidden", await Fails(StatusCode.InvalidArgument, spec, [], cuts.Train.Select(s => s.FinalClassRow()).ToList()));
    }

    [Fact]
    public async Task A_tail_learning_rate_on_a_frozen_depth_is_invalid_argument()
    {
        var spec = Spec(HeadDepth.Mlp);
        spec.TailLearningRate = 1e-4;

        Assert.Contains("spec.tail_learning_rate", await Fails(StatusCode.InvalidArgument, spec, [], cuts.Train.Select(s => s.FinalClassRow()).ToList()));
    }

    [Fact]
    public async Task Rows_without_the_tail_are_failed_precondition_saying_how_to_get_it()
    {
        var detail = await Fails(StatusCode.FailedPrecondition, Spec(), []);

        Assert.Contains("Backbone.GetTail", detail);
        Assert.Contains("Gateway", detail);
    }

    [Fact]
    public async Task A_tail_from_another_backbone_is_invalid_argument_naming_both_fingerprints()
    {
        var foreign = cuts.Tail.Select(c => { var copy = c.Clone(); copy.Fingerprint = "other-backbone"; return copy; });

        var detail = await Fails(StatusCode.InvalidArgument, Spec(), foreign);

        Assert.Contains("other-backbone", detail);
        Assert.Contains(cuts.Fingerprint, detail);
    }

    [Fact]
    public async Task A_tail_missing_pieces_is_invalid_argument_naming_total_bytes()
        => Assert.Contains("total_bytes", await Fails(StatusCode.InvalidArgument, Spec(), cuts.Tail.Take(cuts.Tail.Count - 1)));

    [Fact]
    public async Task A_tail_after_the_first_rows_is_invalid_argument()
    {
        var detail = await RpcAssert.Fails(StatusCode.InvalidArgument, async () =>
        {
            using var call = _host.Client.Train();
            // The server may refuse while pieces are still being written: the status is what counts.
            try
            {
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = Spec() });
                foreach (var piece in cuts.Tail) await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Tail = piece });
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = new FeatureRows { Rows = { cuts.Train[0].ClassRow() } } });
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Tail = cuts.Tail[0] });
                await call.RequestStream.CompleteAsync();
            }
            catch (RpcException)
            {
            }
            await call.ResponseStream.ReadAllAsync().ToListAsync();
        });

        Assert.Contains("before any row", detail);
    }

    [Fact]
    public async Task A_tail_with_an_unsupported_op_is_failed_precondition_naming_the_op()
    {
        var model = VggGraph.Build();
        var cut = GraphCutter.Cut(model);
        var tail = CutPointFinder.TailModel(model, "pool4", cut.CutTensor, [VggGraph.BlockChannels[3], 14, 14]);
        tail.Graph.Node[1].OpType = "LeakyRelu";
        var bytes = tail.ToByteArray();
        var piece = new TailGraphChunk { CutPoint = "last-block", Fingerprint = cuts.Fingerprint, OnnxChunk = ByteString.CopyFrom(bytes), TotalBytes = bytes.Length };

        Assert.Contains("LeakyRelu", await Fails(StatusCode.FailedPrecondition, Spec(), [piece]));
    }

    [Fact]
    public async Task Final_feature_rows_for_a_fine_tuning_depth_are_invalid_argument_with_both_dimensions()
    {
        var detail = await Fails(StatusCode.InvalidArgument, Spec(), cuts.Tail, cuts.Train.Select(s => s.FinalClassRow()).ToList());

        Assert.Contains("512 values", detail);
        Assert.Contains("25088", detail);
    }

    [Fact]
    public async Task Too_many_cut_point_rows_are_resource_exhausted_naming_the_depth_and_the_way_out()
    {
        var detail = await Fails(StatusCode.ResourceExhausted, Spec(), cuts.Tail, cuts.Train.Take(3).Select(s => s.ClassRow()).ToList());

        Assert.Contains("3 rows x 25088 values", detail);
        Assert.Contains("last-block", detail);
        Assert.Contains("fewer images", detail);
        Assert.Contains("probe or mlp", detail);
    }
}

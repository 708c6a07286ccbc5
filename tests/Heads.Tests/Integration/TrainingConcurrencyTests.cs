using Graft.Heads.Tests.Support;
using Graft.V1;
using Grpc.Core;

namespace Graft.Heads.Tests.Integration;

/// <summary>Queueing, same-name exclusion, cancellation and Predict while training, over the real gRPC pipeline.</summary>
public sealed class TrainingConcurrencyTests : IAsyncLifetime
{
    private const string Fp = Tiny.Fingerprint;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly TempRegistry _dir = new();
    private HeadsHost _host = null!;

    public Task InitializeAsync()
    {
        _host = new HeadsHost(_dir.Path, new Dictionary<string, string?> { ["Graft:Heads:MaxConcurrentTrainingJobs"] = "1" });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>Starts a job that would run for a very long time and waits for its first TRAINING message.</summary>
    private async Task<AsyncDuplexStreamingCall<TrainHeadRowsRequest, TrainProgress>> StartLongJob(string name, CancellationToken ct)
    {
        var call = _host.Client.Train(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = TrainCalls.Spec(name, HeadKind.Classifier, Fp, epochs: 10_000) });
        var rows = new FeatureRows();
        rows.Rows.AddRange(Synthetic.Classified(200, 32, 4));
        await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = rows });
        await call.RequestStream.CompleteAsync();
        using var timeout = new CancellationTokenSource(Patience);
        while (await call.ResponseStream.MoveNext(timeout.Token))
        {
            if (call.ResponseStream.Current.Phase == TrainPhase.Training)
            {
                return call;
            }
        }
        throw new InvalidOperationException("The long job ended before training.");
    }

    [Fact]
    public async Task A_second_train_for_the_same_name_is_aborted_while_the_first_runs()
    {
        using var cts = new CancellationTokenSource();
        using var first = await StartLongJob("busy", cts.Token);

        var detail = await RpcAssert.Fails(StatusCode.Aborted,
            () => _host.Client.TrainAsync(TrainCalls.Spec("busy", HeadKind.Regressor, Fp, epochs: 2), Synthetic.Regressed(20, 4)));

        Assert.Contains("already being trained", detail);
        await cts.CancelAsync();
    }

    [Fact]
    public async Task A_cancelled_train_publishes_nothing_and_frees_the_name()
    {
        using (var cts = new CancellationTokenSource())
        {
            using var call = await StartLongJob("cancelled", cts.Token);
            await cts.CancelAsync();
        }

        // Once the job has stopped, the name is free again; the next job then gets version 1, so nothing was published.
        HeadVersionInfo? published = null;
        await TrainCalls.WaitUntilAsync(async () =>
        {
            try
            {
                published = await _host.Client.TrainPublishedAsync(TrainCalls.Spec("cancelled", HeadKind.Classifier, Fp, epochs: 2), Synthetic.Classified(40, 32, 4));
                return true;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Aborted)
            {
                return false;
            }
        }, Patience);

        Assert.NotNull(published);
        Assert.Equal(1, published.Version);
        Assert.Equal(["v1"], Directory.GetDirectories(Path.Combine(_dir.Path, "cancelled")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_job_waiting_for_a_slot_reports_its_queue_position_then_trains_when_the_slot_frees()
    {
        using var cts = new CancellationTokenSource();
        var first = await StartLongJob("first", cts.Token);
        var queued = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var second = _host.Client.TrainAsync(TrainCalls.Spec("second", HeadKind.Regressor, Fp, epochs: 3), Synthetic.Regressed(40, 8),
            observe: p => { if (p.Phase == TrainPhase.Queued) queued.TrySetResult(); });

        // Wait until the second job reports it is queued behind the first, then free the slot.
        await queued.Task.WaitAsync(Patience);
        Assert.False(second.IsCompleted);
        await cts.CancelAsync();
        first.Dispose();
        var progress = await second.WaitAsync(Patience);

        Assert.Equal(TrainPhase.Queued, progress[0].Phase);
        Assert.Equal(0, progress[0].QueuePosition);
        Assert.Contains(progress, p => p.Phase == TrainPhase.Training);
        Assert.Equal(TrainPhase.Published, progress[^1].Phase);
    }

    [Fact]
    public async Task Predict_keeps_answering_while_a_job_trains()
    {
        await _host.Client.TrainPublishedAsync(TrainCalls.Spec("serving", HeadKind.Regressor, Fp, epochs: 2), Synthetic.Regressed(40, 8));
        using var cts = new CancellationTokenSource();
        using var job = await StartLongJob("background", cts.Token);

        var answers = 0;
        for (var i = 0; i < 20; i++)
        {
            var reply = await _host.Client.PredictAsync(TrainCalls.Request(Fp, Synthetic.Vector(8, i), "serving"), deadline: DateTime.UtcNow.AddSeconds(30));
            answers += reply.Outputs.Count;
        }

        Assert.Equal(20, answers);
        await cts.CancelAsync();
    }
}

using System.Diagnostics;
using System.Threading.Channels;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;

namespace Graft.Backbone.Batching;

/// <summary>Triton-style dynamic batcher: concurrent requests queue, and one worker runs them together as a single
/// ONNX Runtime batch of up to <c>maxBatchSize</c>, waiting at most <c>maxQueueDelay</c> after the first arrives for
/// others to join. Requests cancelled (or past their deadline) while queued are dropped before the run.</summary>
public sealed class DynamicBatcher : IAsyncDisposable
{
    private readonly Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]> _run;
    private readonly int _maxBatchSize;
    private readonly TimeSpan _maxQueueDelay;
    private readonly BackboneMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _worker;

    public DynamicBatcher(Func<IReadOnlyList<float[]>, float[][]> run, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger logger)
        : this((inputs, _) => run(inputs).Select(f => new[] { f }).ToArray(), maxBatchSize, maxQueueDelay, metrics, logger)
    {
    }

    /// <summary>Creates a batcher over a run that returns several outputs per input (result[input][k] is output
    /// <c>outputs[k]</c>); a batch asks for the union of what its requests want, in one run.</summary>
    public DynamicBatcher(Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]> run, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger logger)
    {
        _run = run;
        _maxBatchSize = maxBatchSize;
        _maxQueueDelay = maxQueueDelay;
        _metrics = metrics;
        _logger = logger;
        _worker = Task.Factory.StartNew(WorkAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>Creates a batcher over a model's <see cref="BackboneModel.Run(IReadOnlyList{float[]}, IReadOnlyList{int})"/>.</summary>
    public DynamicBatcher(BackboneModel model, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger<DynamicBatcher> logger)
        : this((Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]>)model.Run, maxBatchSize, maxQueueDelay, metrics, logger)
    {
    }

    public int MaxBatchSize => _maxBatchSize;

    public TimeSpan MaxQueueDelay => _maxQueueDelay;

    /// <summary>Queues one preprocessed input and returns its features once its batch has run.</summary>
    /// <exception cref="OperationCanceledException">The caller cancelled (or its deadline passed) before the run.</exception>
    public async Task<float[]> EnqueueAsync(float[] input, CancellationToken cancellationToken) =>
        (await EnqueueAsync(input, BackboneModel.FinalOnly, cancellationToken).ConfigureAwait(false))[0];

    /// <summary>Queues one preprocessed input and returns the requested model outputs (0 = final features) once its
    /// batch has run: result[k] is output <paramref name="outputs"/>[k].</summary>
    /// <exception cref="OperationCanceledException">The caller cancelled (or its deadline passed) before the run.</exception>
    public Task<float[][]> EnqueueAsync(float[] input, IReadOnlyList<int> outputs, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pending = new Pending(input, outputs, cancellationToken);
        // The caller is released at once on cancellation; the worker then skips the input.
        pending.Registration = cancellationToken.Register(static p => ((Pending)p!).Cancel(), pending);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(DynamicBatcher), "The backbone is shutting down.");
        }
        return pending.Completion.Task;
    }

    private async Task WorkAsync()
    {
        var batch = new List<Pending>(_maxBatchSize);
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            var deadline = Stopwatch.GetTimestamp() + (long)(_maxQueueDelay.TotalSeconds * Stopwatch.Frequency);
            while (batch.Count < _maxBatchSize)
            {
                if (reader.TryRead(out var next))
                {
                    if (next.IsAbandoned) DropOne(next);
                    else batch.Add(next);
                    continue;
                }
                // Everything read so far was dropped: go back to waiting for a live request.
                if (batch.Count == 0) break;
                var remaining = deadline - Stopwatch.GetTimestamp();
                if (remaining <= 0) break;
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds((double)remaining / Stopwatch.Frequency));
                try
                {
                    if (!await reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false)) break;
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            if (batch.Count > 0) RunBatch(batch);
        }
    }

    private void RunBatch(List<Pending> batch)
    {
        // A last look: callers that gave up while the batch filled cost no model time.
        var live = new List<Pending>(batch.Count);
        foreach (var item in batch)
        {
            if (item.IsAbandoned) DropOne(item);
            else live.Add(item);
        }
        if (live.Count == 0) return;

        // One run serves every request of the batch: it reads the union of the outputs they want.
        var outputs = live.SelectMany(p => p.Outputs).Distinct().Order().ToList();
        float[][][] features;
        try
        {
            features = _run(live.Select(p => p.Input).ToList(), outputs);
        }
        catch (Exception e)
        {
            Log.BatchFailed(_logger, e, live.Count);
            foreach (var item in live)
            {
                item.Registration.Dispose();
                item.Completion.TrySetException(e);
            }
            return;
        }
        _metrics.BatchRan(live.Count);
        for (var i = 0; i < live.Count; i++)
        {
            live[i].Registration.Dispose();
            live[i].Completion.TrySetResult(live[i].Outputs.Select(o => features[i][outputs.IndexOf(o)]).ToArray());
        }
    }

    private void DropOne(Pending item)
    {
        _metrics.Dropped(1);
        Log.DroppedExpired(_logger, 1);
        item.Registration.Dispose();
        item.Cancel();
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _worker.ConfigureAwait(false);
    }

    private sealed record Pending(float[] Input, IReadOnlyList<int> Outputs, CancellationToken CancellationToken)
    {
        public TaskCompletionSource<float[][]> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenRegistration Registration { get; set; }

        /// <summary>Cancelled, past its deadline, or already answered: not worth model time.</summary>
        public bool IsAbandoned => CancellationToken.IsCancellationRequested || Completion.Task.IsCompleted;

        public void Cancel() => Completion.TrySetCanceled(CancellationToken);
    }
}

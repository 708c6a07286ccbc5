using System.Diagnostics;
using System.Threading.Channels;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;

namespace Graft.Backbone.Batching;

/// <summary>Triton-style dynamic batcher: concurrent requests queue, and each free worker (one per ONNX Runtime session
/// of the <see cref="ExecutionLayout"/>) runs a batch of up to <c>maxBatchSize</c>, formed at most <c>maxQueueDelay</c>
/// after its oldest request arrived, and at once when no other input is queued or announced (<see cref="Announce"/>):
/// a lone caller never waits for company that is not coming. With several workers free, the queue is shared out
/// between them rather than taken whole by the first, so parallel sessions run in parallel. Requests cancelled (or past their deadline) while
/// queued are dropped before the run.</summary>
public sealed class DynamicBatcher : IAsyncDisposable
{
    private readonly Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]> _run;
    private readonly int _maxBatchSize;
    private readonly TimeSpan _maxQueueDelay;
    private readonly long _maxQueueDelayTicks;
    private readonly BackboneMetrics _metrics;
    private readonly ILogger _logger;
    // Not SingleReader: only the multi-reader channel can count its items, which the share-out needs.
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>();
    private readonly Channel<List<Pending>> _batches = Channel.CreateUnbounded<List<Pending>>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly SemaphoreSlim _freeWorkers;
    private readonly Task _collector;
    private int _arriving;
    private readonly Task[] _workers;

    /// <summary>Creates a batcher over a single-output batch function; <paramref name="run"/> is called by up to
    /// <paramref name="workers"/> threads at once (the number of sessions).</summary>
    public DynamicBatcher(Func<IReadOnlyList<float[]>, float[][]> run, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger logger, int workers = 1)
        : this((inputs, _) => run(inputs).Select(f => new[] { f }).ToArray(), maxBatchSize, maxQueueDelay, metrics, logger, workers)
    {
    }

    /// <summary>Creates a batcher over a run that returns several outputs per input (result[input][k] is output
    /// <c>outputs[k]</c>); a batch asks for the union of what its requests want, in one run. <paramref name="run"/> is
    /// called by up to <paramref name="workers"/> threads at once (the number of sessions).</summary>
    public DynamicBatcher(Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]> run, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger logger, int workers = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        _run = run;
        _maxBatchSize = maxBatchSize;
        _maxQueueDelay = maxQueueDelay;
        _maxQueueDelayTicks = (long)(maxQueueDelay.TotalSeconds * Stopwatch.Frequency);
        _metrics = metrics;
        _logger = logger;
        Workers = workers;
        _freeWorkers = new SemaphoreSlim(workers, workers);
        _collector = Task.Factory.StartNew(CollectAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        // Dedicated threads: a batch waiting for a pool thread to be injected would waste the run it is ready for.
        _workers = Enumerable.Range(0, workers)
            .Select(_ => Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
            .ToArray();
    }

    /// <summary>Creates a batcher over a model's <see cref="BackboneModel.Run(IReadOnlyList{float[]}, IReadOnlyList{int})"/>,
    /// one worker per session.</summary>
    public DynamicBatcher(BackboneModel model, int maxBatchSize, TimeSpan maxQueueDelay, BackboneMetrics metrics, ILogger<DynamicBatcher> logger)
        : this((Func<IReadOnlyList<float[]>, IReadOnlyList<int>, float[][][]>)model.Run, maxBatchSize, maxQueueDelay, metrics, logger, model.Layout.Sessions)
    {
    }

    /// <summary>Batches that can run at once.</summary>
    public int Workers { get; }

    public int MaxBatchSize => _maxBatchSize;

    public TimeSpan MaxQueueDelay => _maxQueueDelay;

    /// <summary>Announces an input on its way (being decoded and preprocessed). A batch waits up to <c>maxQueueDelay</c>
    /// for inputs only while some are announced: with none on the way, waiting could only add latency, so a lone
    /// request runs at once. The announcement ends when a batch takes the input (or when disposed, if it is never queued).</summary>
    public Arrival Announce()
    {
        Interlocked.Increment(ref _arriving);
        return new Arrival(this);
    }

    /// <summary>Queues one preprocessed input and returns its features once its batch has run.</summary>
    /// <exception cref="OperationCanceledException">The caller cancelled (or its deadline passed) before the run.</exception>
    public async Task<float[]> EnqueueAsync(float[] input, CancellationToken cancellationToken) =>
        (await EnqueueAsync(input, BackboneModel.FinalOnly, cancellationToken).ConfigureAwait(false))[0];

    /// <summary>Queues one preprocessed input and returns the requested model outputs (0 = final features) once its
    /// batch has run: result[k] is output <paramref name="outputs"/>[k].</summary>
    /// <exception cref="OperationCanceledException">The caller cancelled (or its deadline passed) before the run.</exception>
    /// <param name="input">One preprocessed input, without the batch dimension.</param>
    /// <param name="outputs">Model outputs wanted (0 = the final features).</param>
    /// <param name="cancellationToken">Cancels the wait; a cancelled input is skipped rather than run.</param>
    /// <param name="arrival">This input's announcement (see <see cref="Announce"/>), ended once a batch takes the input.</param>
    public Task<float[][]> EnqueueAsync(float[] input, IReadOnlyList<int> outputs, CancellationToken cancellationToken, Arrival? arrival = null)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            // The collector ends the announcement when it takes the input: until then it counts as on its way.
            var pending = new Pending(input, outputs, cancellationToken, Stopwatch.GetTimestamp()) { Arrival = arrival };
            // The caller is released at once on cancellation; the worker then skips the input.
            pending.Registration = cancellationToken.Register(static p => ((Pending)p!).Cancel(), pending);
            if (!_queue.Writer.TryWrite(pending))
            {
                throw new ObjectDisposedException(nameof(DynamicBatcher), "The backbone is shutting down.");
            }
            return pending.Completion.Task;
        }
        catch
        {
            arrival?.Dispose();
            throw;
        }
    }

    /// <summary>Forms one batch per free worker: waits for a worker, then for requests, then until the oldest has
    /// waited <c>maxQueueDelay</c> or a full share is queued.</summary>
    private async Task CollectAsync()
    {
        var reader = _queue.Reader;
        Pending? carried = null;
        try
        {
            while (true)
            {
                await _freeWorkers.WaitAsync().ConfigureAwait(false);
                if (carried is null)
                {
                    if (!await reader.WaitToReadAsync().ConfigureAwait(false)) break;
                    if (!reader.TryRead(out carried)) { _freeWorkers.Release(); continue; }
                    carried.Arrival?.Dispose();
                }
                var batch = new List<Pending>(_maxBatchSize) { carried };
                carried = null;
                var deadline = batch[0].EnqueuedAt + _maxQueueDelayTicks;
                while (true)
                {
                    // This worker's share: the queue split between it and the other free workers.
                    var share = Math.Min(_maxBatchSize, (int)Math.Ceiling((double)(batch.Count + reader.Count) / (_freeWorkers.CurrentCount + 1)));
                    while (batch.Count < share && reader.TryRead(out var next))
                    {
                        next.Arrival?.Dispose();
                        batch.Add(next);
                    }
                    if (batch.Count >= Math.Max(share, _maxBatchSize) || (batch.Count >= share && _freeWorkers.CurrentCount > 0)) break;
                    // Nothing queued and nothing on its way: waiting could only delay this batch.
                    if (reader.Count == 0 && Volatile.Read(ref _arriving) == 0) break;
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
                _batches.Writer.TryWrite(batch);
            }
        }
        catch (Exception e)
        {
            // A bug here must not leave callers waiting forever: refuse what is queued and anything enqueued later.
            Log.CollectorFailed(_logger, e);
            _queue.Writer.TryComplete(e);
            if (carried is not null) carried.Completion.TrySetException(e);
            while (reader.TryRead(out var left)) left.Completion.TrySetException(e);
        }
        finally
        {
            _batches.Writer.TryComplete();
        }
    }

    private void Work()
    {
        // Named, so per-thread CPU (top -H, /proc/<pid>/task) tells the runs' thread from the pool's.
        Thread.CurrentThread.Name = "graft-batch";
        var reader = _batches.Reader;
        while (true)
        {
            List<Pending>? batch;
            // Blocking on purpose: this is a dedicated thread, and a synchronous wait wakes it without a pool hop.
            try
            {
                if (!reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) return;
            }
            catch (ChannelClosedException)
            {
                return;
            }
            if (!reader.TryRead(out batch)) continue;
            try
            {
                RunBatch(batch);
            }
            finally
            {
                _freeWorkers.Release();
            }
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
        var started = Stopwatch.GetTimestamp();
        foreach (var item in live) _metrics.StageTook(BackboneMetrics.Stages.Queue, Stopwatch.GetElapsedTime(item.EnqueuedAt, started).TotalSeconds);
        float[][][] features;
        try
        {
            features = _run(live.Select(p => p.Input).ToList(), outputs);
            _metrics.StageTook(BackboneMetrics.Stages.Run, Stopwatch.GetElapsedTime(started).TotalSeconds);
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
        await _collector.ConfigureAwait(false);
        await Task.WhenAll(_workers).ConfigureAwait(false);
        _freeWorkers.Dispose();
    }

    /// <summary>An input announced to the batcher and not queued yet; disposing it (once or more) ends the announcement.</summary>
    public sealed class Arrival : IDisposable
    {
        private DynamicBatcher? _batcher;

        internal Arrival(DynamicBatcher batcher) => _batcher = batcher;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _batcher, null) is { } batcher) Interlocked.Decrement(ref batcher._arriving);
        }
    }

    private sealed record Pending(float[] Input, IReadOnlyList<int> Outputs, CancellationToken CancellationToken, long EnqueuedAt)
    {
        public TaskCompletionSource<float[][]> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenRegistration Registration { get; set; }

        /// <summary>The input's announcement, ended when the collector takes it.</summary>
        public Arrival? Arrival { get; init; }

        /// <summary>Cancelled, past its deadline, or already answered: not worth model time.</summary>
        public bool IsAbandoned => CancellationToken.IsCancellationRequested || Completion.Task.IsCompleted;

        public void Cancel() => Completion.TrySetCanceled(CancellationToken);
    }
}

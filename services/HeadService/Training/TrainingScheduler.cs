using Microsoft.Extensions.Options;

namespace Graft.Heads.Training;

/// <summary>
/// Bounded training concurrency: at most <see cref="HeadOptions.MaxConcurrentTrainingJobs"/> jobs run, each on its own
/// dedicated thread (never a thread-pool thread, so Predict and gRPC I/O keep theirs); the rest wait in FIFO order and
/// hear their queue position whenever it changes. One job per head name at a time in this replica.
/// </summary>
public sealed class TrainingScheduler
{
    private readonly int _maxRunning;
    private readonly int _maxQueued;
    private readonly HeadsTelemetry _telemetry;
    private readonly Lock _gate = new();
    private readonly LinkedList<Ticket> _waiting = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _running;

    public TrainingScheduler(IOptions<HeadOptions> options, HeadsTelemetry telemetry)
    {
        _maxRunning = options.Value.MaxConcurrentTrainingJobs;
        _maxQueued = options.Value.MaxQueuedTrainingJobs;
        _telemetry = telemetry;
    }

    /// <summary>Claims a head name for one training call; a second call for the same name gets ABORTED at once
    /// (it does not wait), so two jobs never interleave and the caller learns immediately.</summary>
    public IDisposable ClaimName(string name)
    {
        lock (_gate)
        {
            if (!_names.Add(name))
            {
                throw new HeadException(HeadErrorKind.Aborted,
                    $"Head '{name}' is already being trained by another call; retry when that call has finished.");
            }
        }
        return new NameClaim(this, name);
    }

    /// <summary>Waits for a slot (reporting the number of jobs ahead), then runs <paramref name="work"/> on a
    /// dedicated thread. Cancelling while queued leaves the queue; cancelling while running is up to the work.</summary>
    public async Task<T> RunAsync<T>(Func<CancellationToken, T> work, Action<int> onQueuePosition, CancellationToken cancellationToken)
    {
        Ticket? ticket = null;
        lock (_gate)
        {
            if (_running < _maxRunning && _waiting.Count == 0)
            {
                _running++;
            }
            else if (_waiting.Count >= _maxQueued)
            {
                throw new HeadException(HeadErrorKind.ResourceExhausted,
                    $"{_waiting.Count} training jobs are already queued (Graft:Heads:MaxQueuedTrainingJobs); retry later.");
            }
            else
            {
                ticket = new Ticket(onQueuePosition);
                ticket.Node = _waiting.AddLast(ticket);
                onQueuePosition(_waiting.Count - 1);
            }
            Publish();
        }
        if (ticket is not null)
        {
            await using var registration = cancellationToken.Register(() => Leave(ticket));
            await ticket.Started.Task.ConfigureAwait(false);
        }

        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                done.SetResult(work(cancellationToken));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
            finally
            {
                ReleaseSlot();
            }
        })
        {
            IsBackground = true,
            Name = "graft-head-training",
            Priority = ThreadPriority.BelowNormal,
        };
        thread.Start();
        return await done.Task.ConfigureAwait(false);
    }

    private void Leave(Ticket ticket)
    {
        lock (_gate)
        {
            if (ticket.Node?.List is null)
            {
                return;
            }
            _waiting.Remove(ticket.Node);
            ticket.Started.TrySetCanceled();
            NotifyPositions();
            Publish();
        }
    }

    private void ReleaseSlot()
    {
        lock (_gate)
        {
            if (_waiting.First is { } next)
            {
                // Hand the slot straight to the next job.
                _waiting.RemoveFirst();
                next.Value.Started.TrySetResult();
                NotifyPositions();
            }
            else
            {
                _running--;
            }
            Publish();
        }
    }

    private void NotifyPositions()
    {
        var position = 0;
        foreach (var t in _waiting)
        {
            t.OnPosition(position++);
        }
    }

    private void Publish() => _telemetry.QueueChanged(_waiting.Count, _running);

    private sealed class Ticket(Action<int> onPosition)
    {
        public Action<int> OnPosition { get; } = onPosition;
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public LinkedListNode<Ticket>? Node { get; set; }
    }

    private sealed class NameClaim(TrainingScheduler owner, string name) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                lock (owner._gate)
                {
                    owner._names.Remove(name);
                }
            }
        }
    }
}

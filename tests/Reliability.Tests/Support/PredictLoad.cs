using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using Graft.V1;
using Grpc.Core;

namespace Graft.Reliability.Tests.Support;

/// <summary>One Predict as a client saw it: when it started (since the load began), how long it took, how it ended.</summary>
public sealed record CallOutcome(TimeSpan Started, TimeSpan Took, StatusCode Code, string Detail, PredictReply? Reply);

/// <summary>Steady Predict traffic from a few concurrent clients through the gateway, every call with a deadline, until
/// stopped. Each worker waits for its call before the next (closed loop), so the load stays bounded.</summary>
public sealed class PredictLoad : IAsyncDisposable
{
    private readonly ConcurrentQueue<CallOutcome> _outcomes = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task[] _workers;

    public PredictLoad(V1.Gateway.GatewayClient client, Metadata headers, IReadOnlyList<ByteString> images, string[] heads,
        int workers, TimeSpan deadline, TimeSpan? pause = null)
    {
        Deadline = deadline;
        _workers = Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            for (var i = w; !_stop.IsCancellationRequested; i += workers)
            {
                var started = _clock.Elapsed;
                try
                {
                    var reply = await client.PredictAsync(new PredictRequest { Image = images[i % images.Count], Heads = { heads } },
                        headers, DateTime.UtcNow + deadline);
                    _outcomes.Enqueue(new CallOutcome(started, _clock.Elapsed - started, StatusCode.OK, "", reply));
                }
                catch (RpcException e)
                {
                    _outcomes.Enqueue(new CallOutcome(started, _clock.Elapsed - started, e.StatusCode, e.Status.Detail, null));
                }
                if (pause is { } p)
                {
                    await Task.Delay(p);
                }
            }
        })).ToArray();
    }

    public TimeSpan Deadline { get; }

    /// <summary>Time since the load started.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    public IReadOnlyList<CallOutcome> Outcomes => _outcomes.OrderBy(o => o.Started).ToList();

    /// <summary>Waits until at least <paramref name="count"/> more calls have finished (bounded by <paramref name="limit"/>).</summary>
    public async Task WaitForCallsAsync(int count, TimeSpan limit)
    {
        var target = _outcomes.Count + count;
        var clock = Stopwatch.StartNew();
        while (_outcomes.Count < target && clock.Elapsed < limit)
        {
            await Task.Delay(20);
        }
    }

    public async Task<IReadOnlyList<CallOutcome>> StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
        return Outcomes;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await StopAsync();
        }
        _stop.Dispose();
    }

    /// <summary>The <paramref name="q"/> quantile (0-1) of call durations, in ms.</summary>
    public static double Quantile(IEnumerable<CallOutcome> outcomes, double q)
    {
        var sorted = outcomes.Select(o => o.Took.TotalMilliseconds).Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}

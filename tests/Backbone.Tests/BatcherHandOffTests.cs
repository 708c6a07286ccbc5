using Graft.Backbone.Batching;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Backbone.Tests;

/// <summary>How the batcher hands inputs to a run: a lone caller does not wait out the queue delay; an announced input
/// (one being decoded) is waited for.</summary>
public sealed class BatcherHandOffTests
{
    // Far longer than any test may take: a batch that waited it out would fail the test by its timeout.
    private static readonly TimeSpan LongDelay = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static BackboneMetrics Metrics() =>
        new(new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());

    [Fact]
    public async Task A_lone_request_runs_at_once_rather_than_waiting_out_the_queue_delay()
    {
        var sizes = new List<int>();
        await using var batcher = new DynamicBatcher(Recording(sizes), 16, LongDelay, Metrics(), NullLogger.Instance);

        var features = await batcher.EnqueueAsync([7f], CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(7f, features[0]);
        lock (sizes) Assert.Equal([1], sizes);
    }

    [Fact]
    public async Task A_batch_waits_for_an_announced_input_and_runs_it_with_the_first()
    {
        var sizes = new List<int>();
        await using var batcher = new DynamicBatcher(Recording(sizes), 16, LongDelay, Metrics(), NullLogger.Instance);

        var arrival = batcher.Announce();
        var first = batcher.EnqueueAsync([1f], CancellationToken.None);
        // Whether or not the collector has taken the first input yet, the announced one must join its batch.
        await Task.Delay(100);
        var second = batcher.EnqueueAsync([2f], BackboneModel.FinalOnly, CancellationToken.None, arrival);
        var results = await Task.WhenAll(first, second.ContinueWith(t => t.Result[0], TaskScheduler.Default)).WaitAsync(Timeout);

        Assert.Equal([1f, 2f], results.Select(r => r[0]));
        lock (sizes) Assert.Equal([2], sizes);
    }

    [Fact]
    public async Task An_announcement_ended_without_an_input_leaves_the_next_request_unhindered()
    {
        var sizes = new List<int>();
        await using var batcher = new DynamicBatcher(Recording(sizes), 16, LongDelay, Metrics(), NullLogger.Instance);

        // A caller whose image was refused: announced, then disposed without enqueueing (twice, as `using` may).
        var refused = batcher.Announce();
        refused.Dispose();
        refused.Dispose();
        var features = await batcher.EnqueueAsync([3f], CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(3f, features[0]);
    }

    private static Func<IReadOnlyList<float[]>, float[][]> Recording(List<int> sizes) => inputs =>
    {
        lock (sizes) sizes.Add(inputs.Count);
        return inputs.Select(i => new[] { i[0] }).ToArray();
    };
}

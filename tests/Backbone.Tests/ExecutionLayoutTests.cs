using System.ComponentModel.DataAnnotations;
using Graft.Backbone.Batching;
using Graft.Backbone.Model;
using Graft.Backbone.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Graft.Backbone.Tests;

public sealed class ExecutionLayoutTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(2, 1, 2)]
    [InlineData(6, 2, 3)]
    [InlineData(8, 2, 4)]
    [InlineData(32, 4, 8)]
    public void Auto_gives_sessions_of_up_to_four_threads_at_most_four_of_them_sharing_the_cores_out(int cores, int sessions, int threads)
    {
        var layout = ExecutionLayout.Resolve(0, 0, false, cores);

        Assert.Equal((sessions, threads, cores), (layout.Sessions, layout.IntraOpThreads, layout.Cores));
    }

    [Fact]
    public void A_configured_thread_count_or_session_count_fixes_that_side_and_the_cores_decide_the_other()
    {
        Assert.Equal((1, 4), Pair(ExecutionLayout.Resolve(0, 4, false, 4)));
        Assert.Equal((2, 3), Pair(ExecutionLayout.Resolve(2, 0, false, 6)));
        Assert.Equal((3, 5), Pair(ExecutionLayout.Resolve(3, 5, true, 2)));
        Assert.Equal("1 session x 2 intra-op threads on 2 cores, no spinning", ExecutionLayout.Resolve(0, 0, false, 2).ToString());

        static (int, int) Pair(ExecutionLayout l) => (l.Sessions, l.IntraOpThreads);
    }

    [Fact]
    public void A_negative_session_count_is_refused_naming_the_key()
    {
        var options = new BackboneOptions { Sessions = -1 };
        var results = new List<ValidationResult>();

        Assert.False(Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true));
        Assert.Contains(results, r => r.ErrorMessage!.Contains("Graft:Backbone:Sessions"));
    }

    [Fact]
    public async Task With_two_workers_a_queue_is_shared_out_and_two_batches_run_at_once()
    {
        var meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var inFlight = 0;
        using var bothRunning = new ManualResetEventSlim();
        var sizes = new List<int>();
        float[][] Run(IReadOnlyList<float[]> inputs)
        {
            lock (sizes) sizes.Add(inputs.Count);
            if (Interlocked.Increment(ref inFlight) == 2) bothRunning.Set();
            // Each run holds its worker until the other worker runs too: only parallel batches get past this.
            var parallel = bothRunning.Wait(TimeSpan.FromSeconds(60));
            Interlocked.Decrement(ref inFlight);
            return parallel ? inputs.Select(i => new[] { i[0] }).ToArray() : throw new TimeoutException("the second worker never ran a batch");
        }
        await using var batcher = new DynamicBatcher(Run, 16, TimeSpan.FromMilliseconds(2), new BackboneMetrics(meters), NullLogger.Instance, workers: 2);

        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => batcher.EnqueueAsync([i], CancellationToken.None)));

        Assert.Equal(Enumerable.Range(0, 16).Select(i => (float)i), results.Select(r => r[0]));
        Assert.True(bothRunning.IsSet);
        lock (sizes) Assert.Equal(16, sizes.Sum());
    }
}

using System.Diagnostics;
using Graft.Reliability.Tests.Support;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>A bounded soak: several clients predicting while another keeps training, then no error, steady memory and a
/// stable p99. 40 s by default; GRAFT_SOAK_SECONDS=120 gives the two-minute run.</summary>
[Collection(ReliabilityCollection.Name)]
public sealed class SoakTests(ReliabilityFixture fixture, ITestOutputHelper output)
{
    /// <summary>Generous: resident memory may settle (caches, JIT, pools) but must not climb without bound.</summary>
    private const long ResidentGrowthBound = 256L << 20;

    private static Dictionary<string, ProcessMemory> Sample(ReliabilityStack stack) =>
        stack.Processes.ToDictionary(p => $"{p.Service}:{p.GrpcPort}", ProcessMemory.Of);

    [Fact]
    public async Task Mixed_predict_and_train_from_several_clients_runs_without_error_with_steady_memory_and_p99()
    {
        // Arrange
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("GRAFT_SOAK_SECONDS"), out var s) ? s : 40;
        var stack = fixture.Stack;
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var images = Enumerable.Range(0, fixture.Test.Count).Select(fixture.TestImage).ToList();
        await using var load = new PredictLoad(fixture.Client, stack.PredictHeaders, images,
            [ReliabilityFixture.Classifier, ReliabilityFixture.Regressor], workers: 3, deadline: TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(3)); // warm-up: JIT, caches, connections
        var start = Sample(stack);
        var measuredFrom = load.Elapsed;
        using var stopSampling = new CancellationTokenSource();
        var samples = new List<Dictionary<string, ProcessMemory>> { start };
        var sampling = Task.Run(async () =>
        {
            while (!stopSampling.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None);
                samples.Add(Sample(stack));
            }
        });

        // Act: one client trains (and so publishes) again and again while three predict.
        var trains = new List<(TimeSpan Took, string Outcome)>();
        var trainExamples = fixture.Train.Where((_, i) => i % 2 == 0).Select(ReliabilityFixture.Labelled).ToList();
        var clock = Stopwatch.StartNew();
        for (var round = 0; clock.Elapsed < TimeSpan.FromSeconds(seconds); round++)
        {
            var began = clock.Elapsed;
            try
            {
                var progress = await fixture.TrainAsync(new HeadSpec { Name = "soak", Kind = HeadKind.Classifier, Epochs = 3, Seed = round }, trainExamples);
                trains.Add((clock.Elapsed - began, progress.LastOrDefault()?.Phase.ToString() ?? "nothing"));
            }
            catch (RpcException e)
            {
                trains.Add((clock.Elapsed - began, $"{e.StatusCode}: {e.Status.Detail}"));
            }
        }
        await stopSampling.CancelAsync();
        await sampling;
        var end = Sample(stack);
        var middle = samples[samples.Count / 2];
        var outcomes = (await load.StopAsync()).Where(o => o.Started >= measuredFrom).ToList();

        // Assert
        var failures = outcomes.Where(o => o.Code != StatusCode.OK).ToList();
        var half = measuredFrom + (outcomes.Last().Started - measuredFrom) / 2;
        var (firstP99, secondP99) = (PredictLoad.Quantile(outcomes.Where(o => o.Started < half), 0.99), PredictLoad.Quantile(outcomes.Where(o => o.Started >= half), 0.99));
        var memory = string.Join(", ", start.Select(p => $"{p.Key.Split(':')[0]} {p.Value.ResidentMiB:0} -> {middle[p.Key].ResidentMiB:0} -> {end[p.Key].ResidentMiB:0} MiB"));
        var line = $"soak {seconds} s: {outcomes.Count} predicts (2 heads each) from 3 clients, served {outcomes.Count - failures.Count}, failed {failures.Count}; " +
            $"{trains.Count} trainings published {trains.Count(t => t.Outcome == "Published")}; p50 {PredictLoad.Quantile(outcomes, 0.5):0} ms; " +
            $"p99 first half {firstP99:0} ms, second half {secondP99:0} ms; RSS start -> middle -> end: {memory}";
        FigureLog.Add(line);
        output.WriteLine(line);
        Assert.True(failures.Count == 0, $"{failures.Count} predicts failed, e.g. {failures.FirstOrDefault()?.Code}: {failures.FirstOrDefault()?.Detail}");
        var unpublished = trains.Where(t => t.Outcome != "Published").ToList();
        Assert.True(unpublished.Count == 0,
            $"{unpublished.Count} of {trains.Count} trainings did not publish, e.g. {unpublished.FirstOrDefault().Outcome}\n{stack.Diagnostics(80)}");
        Assert.True(trains.Count >= 1 && outcomes.Count >= 50, $"the soak did real work: {trains.Count} trainings, {outcomes.Count} predicts");
        foreach (var (process, before) in start)
        {
            // Settling early is allowed; a leak keeps climbing through the second half as well.
            Assert.True(end[process].ResidentBytes - before.ResidentBytes < ResidentGrowthBound, $"{process} RSS grew {before} -> {end[process]}");
            Assert.True(end[process].ResidentBytes - middle[process].ResidentBytes < ResidentGrowthBound / 2, $"{process} RSS kept growing: {before} -> {middle[process]} -> {end[process]}");
        }
        Assert.True(secondP99 < 4 * firstP99 + 250, $"p99 drifted: {firstP99:0} ms -> {secondP99:0} ms");
    }
}

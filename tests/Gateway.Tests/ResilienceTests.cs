using Xunit.Abstractions;
using System.Diagnostics;
using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Tests;

[Collection(StackCollection.Name)]
public sealed class ResilienceTests(StackFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task With_the_backbone_killed_predict_fails_fast_once_the_breaker_opens_and_recovers_after_a_restart()
    {
        // Arrange
        await fixture.HeadsAsync();
        var stack = fixture.Stack;
        var gatewayPid = stack.Gateway.ProcessId;
        var image = ByteString.CopyFrom(fixture.Test[2].ReadBytes());
        var healthy = await PredictAsync(image);

        // Act 1: kill the backbone; calls fail with UNAVAILABLE until the breaker opens, then fail fast.
        stack.Backbone.Kill();
        var failures = new List<(StatusCode Code, string Detail, TimeSpan Took)>();
        // Successes before the kill count in the breaker's sampling window, so how many failures it takes varies.
        var killedAt = Stopwatch.StartNew();
        while (killedAt.Elapsed < TimeSpan.FromSeconds(60) && !failures.Any(IsBreakerRejection))
        {
            failures.Add(await FailingPredictAsync(image));
        }
        var openedAfter = killedAt.Elapsed;
        var fast = await FailingPredictAsync(image);

        // Assert 1
        Assert.All(failures, f => Assert.Equal(StatusCode.Unavailable, f.Code));
        Assert.True(IsBreakerRejection(fast), $"the breaker should be open: {fast.Code} {fast.Detail}\n{stack.Diagnostics(30)}");
        Assert.True(fast.Took < Deadline / 4, $"an open breaker answers well under the {Deadline.TotalSeconds} s deadline; took {fast.Took.TotalSeconds:0.00} s");
        var gatewayMetrics = await stack.Gateway.ScrapeMetricsAsync();
        Assert.True(gatewayMetrics.Sum("graft_gateway_downstream_calls_total", ("downstream", "backbone"), ("status", "CircuitOpen")) > 0);

        // Act 2: restart the backbone on the same port; the gateway, untouched, recovers by itself.
        await stack.Backbone.RestartAsync(stack.Options.ReadyTimeout);
        var sinceRestart = Stopwatch.StartNew();
        PredictReply? recovered = null;
        while (recovered is null && sinceRestart.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                recovered = await PredictAsync(image);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
            {
                await Task.Delay(200);
            }
        }

        output.WriteLine($"{failures.Count - 1} failing calls ({openedAfter.TotalSeconds:0.0} s) before the breaker opened (slowest {failures.Max(f => f.Took).TotalSeconds:0.000} s); " +
            $"open-breaker rejection took {fast.Took.TotalSeconds:0.000} s; recovered {sinceRestart.Elapsed.TotalSeconds:0.00} s after the backbone was SERVING again");

        // Assert 2
        Assert.NotNull(recovered);
        Assert.True(sinceRestart.Elapsed < TimeSpan.FromSeconds(30), $"recovered {sinceRestart.Elapsed.TotalSeconds:0.0} s after the backbone was ready again");
        Assert.Equal(healthy.BackboneFingerprint, recovered.BackboneFingerprint);
        Assert.Equal(healthy.Results.Select(r => r.Head), recovered.Results.Select(r => r.Head));
        Assert.Equal(gatewayPid, stack.Gateway.ProcessId);
        Assert.True(stack.Gateway.IsRunning);
    }

    private static bool IsBreakerRejection((StatusCode Code, string Detail, TimeSpan Took) f) =>
        f.Code == StatusCode.Unavailable && f.Detail.Contains("not calling it", StringComparison.Ordinal);

    private async Task<PredictReply> PredictAsync(ByteString image) =>
        await fixture.Client.PredictAsync(new PredictRequest { Image = image, Heads = { StackFixture.Classifier } },
            fixture.Stack.PredictHeaders, DateTime.UtcNow + Deadline);

    private async Task<(StatusCode Code, string Detail, TimeSpan Took)> FailingPredictAsync(ByteString image)
    {
        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<RpcException>(() => PredictAsync(image));
        return (e.StatusCode, e.Status.Detail, clock.Elapsed);
    }
}

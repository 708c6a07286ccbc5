using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Tests;

/// <summary>Canary and shadow splits through the Gateway of the three real processes: the admin calls, the share of
/// traffic, the request id's stable side, and the per-version metrics in Prometheus and GetHead.</summary>
[Collection(StackCollection.Name)]
public sealed class CanaryTests(StackFixture fixture)
{
    [Fact]
    public async Task A_canary_split_takes_its_share_stably_per_request_id_and_a_shadow_is_measured_but_never_returned()
    {
        // Arrange: two versions of a small head (the second training reads the backbone's cache), the first active.
        await fixture.HeadsAsync();
        const string name = "canary-probe";
        var examples = fixture.Train.Where(s => s.Label == "bag").Take(12).Concat(fixture.Train.Where(s => s.Label == "trouser").Take(12)).ToList();
        var first = (await fixture.TrainAsync(new HeadSpec { Name = name, Kind = HeadKind.Classifier, Epochs = 3, Seed = 1 }, examples.Select(StackFixture.Labelled)))[^1].Published;
        var second = (await fixture.TrainAsync(new HeadSpec { Name = name, Kind = HeadKind.Classifier, Epochs = 3, Seed = 2 }, examples.Select(StackFixture.Labelled)))[^1].Published;
        await fixture.Client.ActivateHeadAsync(new ActivateVersionRequest { Name = name, Version = first.Version }, fixture.Stack.AdminHeaders);
        var image = ByteString.CopyFrom(examples[0].ReadBytes());
        try
        {
            // Act: a 30% canary; 600 requests with ids through PredictStream, then 60 of the same ids through Predict.
            var refused = await Assert.ThrowsAsync<RpcException>(async () => await fixture.Client.SetHeadSplitAsync(
                new HeadSplitRequest { Name = name, Version = second.Version, Mode = HeadSplitMode.Canary, Percent = 30 }, fixture.Stack.PredictHeaders));
            var canary = await fixture.Client.SetHeadSplitAsync(
                new HeadSplitRequest { Name = name, Version = second.Version, Mode = HeadSplitMode.Canary, Percent = 30 }, fixture.Stack.AdminHeaders);
            var streamed = await StreamAsync(name, image, 600);
            var unary = new Dictionary<string, int>();
            foreach (var id in streamed.Keys.Take(60))
            {
                var reply = await fixture.Client.PredictAsync(new PredictRequest { Image = image, Heads = { name }, RequestId = id }, fixture.Stack.PredictHeaders);
                unary[id] = reply.Results.Single().Version;
            }

            // Assert: admin only; Binomial(600, 0.3) has mean 180 and sd 11.2, so +-4.5 sd is [130, 230] (a false failure
            // about once in 150,000 runs); the same id takes the same side whichever call carries it.
            Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
            Assert.Equal((HeadSplitMode.Canary, second.Version, first.Version), (canary.Split.Mode, canary.Split.CandidateVersion, canary.Split.ActiveVersion));
            var toCandidate = streamed.Values.Count(v => v == second.Version);
            Assert.InRange(toCandidate, 130, 230);
            Assert.All(streamed.Values, v => Assert.Contains(v, new[] { first.Version, second.Version }));
            Assert.All(unary, kv => Assert.Equal(streamed[kv.Key], kv.Value));

            // Act: a shadow of the same candidate on 40 requests.
            await fixture.Client.SetHeadSplitAsync(new HeadSplitRequest { Name = name, Version = second.Version, Mode = HeadSplitMode.Shadow }, fixture.Stack.AdminHeaders);
            var shadowed = await StreamAsync(name, image, 40);
            var metrics = await fixture.Stack.Heads.ScrapeMetricsAsync(DateTime.UtcNow);
            var info = await fixture.Client.GetHeadAsync(new GetHeadRequest { Name = name }, fixture.Stack.PredictHeaders);

            // Assert: every answer from the active version; the shadow's runs and agreement counted in both places.
            Assert.All(shadowed.Values, v => Assert.Equal(first.Version, v));
            var compared = metrics.Sum("graft_heads_shadow_comparisons_total", ("head", name));
            Assert.Equal(40, compared);
            var agreed = metrics.Sum("graft_heads_shadow_comparisons_total", ("head", name), ("agreed", "true"));
            var shadow = info.Traffic.Single(t => t.Role == "shadow");
            Assert.Equal((40L, (long)agreed), (shadow.ShadowCompared, shadow.ShadowAgreed));
            Assert.Equal(agreed / 40, shadow.ShadowAgreement, 6);
            // Every canary answer so far: the streamed ones and the unary repeats.
            Assert.Equal(toCandidate + unary.Values.Count(v => v == second.Version), metrics.Sum("graft_heads_version_requests_total", ("head", name), ("role", "canary")));

            // Promote: the candidate serves everyone, and the split is gone.
            var promoted = await fixture.Client.PromoteHeadAsync(new HeadSplitActionRequest { Name = name }, fixture.Stack.AdminHeaders);
            Assert.Null(promoted.Split);
            Assert.Equal(second.Version, promoted.ActiveVersion);
            Assert.All((await StreamAsync(name, image, 10)).Values, v => Assert.Equal(second.Version, v));
        }
        finally
        {
            await fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = name }, fixture.Stack.AdminHeaders);
        }
    }

    /// <summary>Sends <paramref name="count"/> items with ids r-0, r-1... and returns the version that answered each.</summary>
    private async Task<Dictionary<string, int>> StreamAsync(string head, ByteString image, int count)
    {
        using var call = fixture.Client.PredictStream(fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(5));
        var reading = Task.Run(async () =>
        {
            var versions = new Dictionary<string, int>();
            await foreach (var reply in call.ResponseStream.ReadAllAsync())
            {
                Assert.True(reply.ErrorCode == 0, reply.ErrorMessage);
                versions[reply.Id] = reply.Reply.Results.Single().Version;
            }
            return versions;
        });
        for (var i = 0; i < count; i++)
        {
            await call.RequestStream.WriteAsync(new PredictStreamRequest { Id = "r-" + i, Request = new PredictRequest { Image = image, Heads = { head } } });
        }
        await call.RequestStream.CompleteAsync();
        return await reading;
    }
}

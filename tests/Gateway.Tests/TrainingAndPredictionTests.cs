using Xunit.Abstractions;
using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Tests;

[Collection(StackCollection.Name)]
public sealed class TrainingAndPredictionTests(StackFixture fixture, ITestOutputHelper output)
{
    private const string ExtractMethod = "/graft.v1.Backbone/Extract";

    [Fact]
    public async Task Training_through_the_gateway_reports_extraction_then_epochs_and_publishes_heads_that_beat_their_baselines()
    {
        // Arrange
        var backbone = await fixture.Client.DescribeAsync(new DescribeRequest(), fixture.Stack.PredictHeaders);

        // Act
        var heads = await fixture.HeadsAsync();

        // Assert
        foreach (var (progress, kind) in new[] { (heads.Regressor, HeadKind.Regressor), (heads.Classifier, HeadKind.Classifier) })
        {
            var extracting = progress.Where(p => p.Phase == TrainPhase.Extracting).ToList();
            Assert.NotEmpty(extracting);
            Assert.All(extracting, p => Assert.Equal(fixture.Train.Count, p.ImagesTotal));
            Assert.Equal(fixture.Train.Count, extracting[^1].ImagesDone);
            Assert.True(extracting.Select(p => p.ImagesDone).SequenceEqual(extracting.Select(p => p.ImagesDone).Order()), "images_done never goes back");

            var training = progress.Where(p => p.Phase == TrainPhase.Training).ToList();
            Assert.NotEmpty(training);
            var phases = progress.Select(p => p.Phase).ToList();
            Assert.True(phases.LastIndexOf(TrainPhase.Extracting) < phases.IndexOf(TrainPhase.Training), "extraction comes before the epochs");

            var final = progress[^1];
            output.WriteLine($"{kind}: {fixture.Train.Count} images, {training.Count} epochs, published v{final.Published.Version} after {final.ElapsedSeconds:0.0} s; " +
                $"mae {final.Published.Metrics.Mae:0.00} (baseline {final.Published.Metrics.BaselineMae:0.00}), accuracy {final.Published.Metrics.Accuracy:0.00} (baseline {final.Published.Metrics.BaselineAccuracy:0.00})");
            Assert.Equal(TrainPhase.Published, final.Phase);
            Assert.Equal(kind, final.Published.Kind);
            Assert.Equal(backbone.Backbone.Fingerprint, final.Published.BackboneFingerprint);
            Assert.True(final.Published.Version >= 1);
            if (kind == HeadKind.Regressor)
            {
                Assert.True(final.Published.Metrics.Mae < final.Published.Metrics.BaselineMae,
                    $"validation MAE {final.Published.Metrics.Mae} should beat the mean-predictor baseline {final.Published.Metrics.BaselineMae}");
            }
            else
            {
                Assert.Equal(StackFixture.Classes.Order(), final.Published.Labels.Order());
                Assert.True(final.Published.Metrics.Accuracy > final.Published.Metrics.BaselineAccuracy,
                    $"validation accuracy {final.Published.Metrics.Accuracy} should beat the majority baseline {final.Published.Metrics.BaselineAccuracy}");
            }
        }
    }

    [Fact]
    public async Task Predict_with_both_heads_runs_the_backbone_once_and_answers_for_each_head()
    {
        // Arrange: an image of a class never sent before, so the backbone cannot answer from its cache.
        await fixture.HeadsAsync();
        var unseen = SampleImages.Load("test", "coat")[3];
        var before = await ScrapeAfterQuietAsync(fixture.Stack.Backbone);

        // Act
        var reply = await fixture.Client.PredictAsync(new PredictRequest
        {
            Image = ByteString.CopyFrom(unseen.ReadBytes()),
            Heads = { StackFixture.Regressor, StackFixture.Classifier },
            TopK = 2,
        }, fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(1));
        var after = await ScrapeAfterQuietAsync(fixture.Stack.Backbone);

        // Assert
        Assert.Equal(1, after.Sum("graft_backbone_inferences_total") - before.Sum("graft_backbone_inferences_total"));
        Assert.Equal(1, Extracts(after) - Extracts(before));
        Assert.False(reply.CacheHit);
        Assert.False(string.IsNullOrEmpty(reply.BackboneFingerprint));
        Assert.Collection(reply.Results,
            r =>
            {
                Assert.Equal(StackFixture.Regressor, r.Head);
                Assert.Equal(HeadKind.Regressor, r.Kind);
                Assert.True(double.IsFinite(r.Value) && r.Value > 0, $"a length in cm, got {r.Value}");
            },
            r =>
            {
                Assert.Equal(StackFixture.Classifier, r.Head);
                Assert.Equal(HeadKind.Classifier, r.Kind);
                Assert.Equal(2, r.Top.Count);
                Assert.True(r.Top[0].Probability >= r.Top[1].Probability);
                Assert.All(r.Top, t => Assert.Contains(t.Label, StackFixture.Classes));
            });
        Assert.All(reply.Results, r => Assert.True(r.Version >= 1));
    }

    [Fact]
    public async Task PredictStream_answers_in_request_order_with_ids_and_the_heads_generalise_to_unseen_test_images()
    {
        // Arrange
        await fixture.HeadsAsync();
        var test = fixture.Test;
        var mean = fixture.Train.Average(s => s.Length);

        // Act: the test images plus one bad item in the middle, all over one stream.
        using var call = fixture.Client.PredictStream(fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(5));
        var reading = Task.Run(async () => await call.ResponseStream.ReadAllAsync().ToListAsync());
        for (var i = 0; i < test.Count; i++)
        {
            await call.RequestStream.WriteAsync(Item($"img-{i}", test[i].ReadBytes()));
            if (i == test.Count / 2)
            {
                await call.RequestStream.WriteAsync(Item("broken", "not an image"u8.ToArray()));
            }
        }
        await call.RequestStream.CompleteAsync();
        var replies = await reading;

        // Assert
        var expectedIds = Enumerable.Range(0, test.Count).Select(i => $"img-{i}").ToList();
        expectedIds.Insert(test.Count / 2 + 1, "broken");
        Assert.Equal(expectedIds, replies.Select(r => r.Id));

        var broken = replies.Single(r => r.Id == "broken");
        Assert.Equal((int)StatusCode.InvalidArgument, broken.ErrorCode);
        Assert.Null(broken.Reply);

        var answered = replies.Where(r => r.Id != "broken").ToList();
        Assert.All(answered, r => Assert.Equal(0, r.ErrorCode));
        var correct = answered.Select((r, i) => r.Reply.Results.Single(o => o.Head == StackFixture.Classifier).Top[0].Label == test[i].Label).Count(ok => ok);
        var accuracy = correct / (double)test.Count;
        Assert.True(accuracy >= 0.6, $"test accuracy {accuracy:P0} over {test.Count} unseen images (chance is 25%)");

        var mae = answered.Select((r, i) => Math.Abs(r.Reply.Results.Single(o => o.Head == StackFixture.Regressor).Value - test[i].Length)).Average();
        var baseline = test.Average(s => Math.Abs(s.Length - mean));
        output.WriteLine($"test split: accuracy {accuracy:0.00}, MAE {mae:0.0} cm vs baseline {baseline:0.0} cm over {test.Count} images");
        Assert.True(mae < baseline, $"test MAE {mae:0.0} cm should beat always predicting the training mean ({baseline:0.0} cm)");

        static PredictStreamRequest Item(string id, byte[] image) => new()
        {
            Id = id,
            Request = new PredictRequest { Image = ByteString.CopyFrom(image), Heads = { StackFixture.Regressor, StackFixture.Classifier } },
        };
    }

    [Fact]
    public async Task A_bad_image_stays_invalid_argument_and_an_unknown_head_is_not_found_naming_the_existing_heads()
    {
        // Arrange
        await fixture.HeadsAsync();
        var good = ByteString.CopyFrom(fixture.Test[0].ReadBytes());

        // Act
        var badImage = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.PredictAsync(
            new PredictRequest { Image = ByteString.CopyFromUtf8("this is not an image") }, fixture.Stack.PredictHeaders).ResponseAsync);
        var unknownHead = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.PredictAsync(
            new PredictRequest { Image = good, Heads = { "no-such-head" } }, fixture.Stack.PredictHeaders).ResponseAsync);

        // Assert
        Assert.Equal(StatusCode.InvalidArgument, badImage.StatusCode);
        Assert.Equal(StatusCode.NotFound, unknownHead.StatusCode);
        Assert.Contains("no-such-head", unknownHead.Status.Detail);
        Assert.Contains(StackFixture.Regressor, unknownHead.Status.Detail);
        Assert.Contains(StackFixture.Classifier, unknownHead.Status.Detail);
        Assert.DoesNotContain("   at ", badImage.Status.Detail + unknownHead.Status.Detail); // no stack traces
    }

    private static double Extracts(PrometheusText metrics) =>
        metrics.Sum("graft_rpc_server_requests_total", ("rpc_method", ExtractMethod), ("rpc_grpc_status_code", "OK"));

    /// <summary>The Prometheus exporter caches a scrape briefly; wait for a snapshot made after everything so far.</summary>
    private static Task<PrometheusText> ScrapeAfterQuietAsync(ServiceProcess service) => service.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);
}

using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Gateway.Tests;

/// <summary>Heads that fine-tune the backbone's tail, end to end across the three processes: trained through
/// Gateway.TrainHead (tail from Backbone.GetTail, cut-point rows), served from cut-point activations that come from the
/// same backbone run as the final features, depth = auto by data size, augmentation at training time only.</summary>
[Collection(StackCollection.Name)]
public sealed class FineTuningTests(StackFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task A_last_block_classifier_trained_through_the_gateway_is_stored_with_its_cut_point_and_served_end_to_end()
    {
        // Arrange
        var progress = await fixture.FineTunedAsync();
        var test = fixture.Test;

        // Act
        var head = await fixture.Client.GetHeadAsync(new GetHeadRequest { Name = StackFixture.FineTuned }, fixture.Stack.PredictHeaders);
        var replies = new List<PredictReply>();
        foreach (var sample in test)
        {
            replies.Add(await fixture.Client.PredictAsync(new PredictRequest
            {
                Image = ByteString.CopyFrom(sample.ReadBytes()), Heads = { StackFixture.FineTuned }, TopK = 4,
            }, fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(1)));
        }

        // Assert
        var final = progress[^1];
        Assert.Equal(TrainPhase.Published, final.Phase);
        Assert.Contains(progress, p => p.Phase == TrainPhase.Training);
        Assert.Equal(40, progress.Last(p => p.Phase == TrainPhase.Extracting).ImagesTotal);
        var version = head.Versions.Single(v => v.Version == head.ActiveVersion);
        Assert.Equal(HeadDepth.LastBlock, version.Spec.Depth);
        Assert.Equal("last-block", version.CutPoint);
        Assert.Equal([512L, 7, 7], version.CutShape);
        Assert.Equal("", version.DepthReason); // chosen by the client, not by auto

        Assert.All(replies, r =>
        {
            var result = Assert.Single(r.Results);
            Assert.Equal(StackFixture.FineTuned, result.Head);
            Assert.Equal(4, result.Top.Count);
            Assert.InRange(result.Top.Sum(t => t.Probability), 0.999, 1.001);
        });
        var accuracy = replies.Zip(test, (r, s) => r.Results[0].Top[0].Label == s.Label ? 1.0 : 0.0).Average();
        output.WriteLine($"last-block head: published v{final.Published.Version} after {final.ElapsedSeconds:0.0} s, validation accuracy {final.Published.Metrics.Accuracy:0.00}, test accuracy {accuracy:0.00} over {test.Count} images");
        Assert.True(accuracy >= 0.5, $"test accuracy {accuracy:P0} over {test.Count} unseen images (chance is 25%)");
    }

    [Fact]
    public async Task A_predict_naming_a_frozen_and_a_fine_tuned_head_runs_the_backbone_once_per_image()
    {
        // Arrange: images never sent before, so the backbone cannot answer from its cache.
        await fixture.HeadsAsync();
        await fixture.FineTunedAsync();
        var unseen = SampleImages.Load("test", "coat").Take(3).ToList();
        var before = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Act
        var replies = new List<PredictReply>();
        foreach (var image in unseen)
        {
            replies.Add(await fixture.Client.PredictAsync(new PredictRequest
            {
                Image = ByteString.CopyFrom(image.ReadBytes()), Heads = { StackFixture.Classifier, StackFixture.FineTuned },
            }, fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(1)));
        }
        var after = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Assert
        Assert.Equal(unseen.Count, after.Sum("graft_backbone_inferences_total") - before.Sum("graft_backbone_inferences_total"));
        Assert.All(replies, r =>
        {
            Assert.Equal([StackFixture.Classifier, StackFixture.FineTuned], r.Results.Select(o => o.Head));
            Assert.All(r.Results, o => Assert.NotEmpty(o.Top));
        });
    }

    [Fact]
    public async Task Auto_keeps_the_backbone_frozen_for_few_images_per_class_and_fine_tunes_the_last_block_from_the_threshold()
    {
        // Arrange: the stack fine-tunes from StackFixture.AutoLastBlockPerClass (4) images per class.
        var few = fixture.Train.Where(s => s.Label is "bag" or "trouser").GroupBy(s => s.Label).SelectMany(g => g.Take(2)).ToList();
        var enough = fixture.Train.Where(s => s.Label is "bag" or "trouser").GroupBy(s => s.Label).SelectMany(g => g.Skip(2).Take(StackFixture.AutoLastBlockPerClass)).ToList();

        // Act
        var frozen = await fixture.TrainAsync(
            new HeadSpec { Name = "auto-few", Kind = HeadKind.Classifier, Depth = HeadDepth.Auto, Epochs = 2, Seed = 7, ValidationFraction = 0 }, few.Select(StackFixture.Labelled));
        var fineTuned = await fixture.TrainAsync(
            new HeadSpec { Name = "auto-enough", Kind = HeadKind.Classifier, Depth = HeadDepth.Auto, Epochs = 1, Seed = 7, ValidationFraction = 0 }, enough.Select(StackFixture.Labelled));

        // Assert
        var frozenReason = "2 images per class: frozen features with an MLP head (fine-tuning starts at 4, Graft:Gateway:AutoLastBlockPerClass)";
        Assert.Equal(frozenReason, frozen.First(p => p.Message.Length > 0).Message);
        Assert.Equal(TrainPhase.Published, frozen[^1].Phase);
        Assert.Equal(HeadDepth.Mlp, frozen[^1].Published.Spec.Depth);
        Assert.Equal("", frozen[^1].Published.CutPoint);
        Assert.Equal(frozenReason, frozen[^1].Published.DepthReason);

        var fineTunedReason = "4 images per class: fine-tuning the last block";
        Assert.Equal(fineTunedReason, fineTuned.First(p => p.Message.Length > 0).Message);
        Assert.Equal(TrainPhase.Published, fineTuned[^1].Phase);
        Assert.Equal(HeadDepth.LastBlock, fineTuned[^1].Published.Spec.Depth);
        Assert.Equal("last-block", fineTuned[^1].Published.CutPoint);
        var stored = await fixture.Client.GetHeadAsync(new GetHeadRequest { Name = "auto-enough" }, fixture.Stack.PredictHeaders);
        Assert.Equal(fineTunedReason, stored.Versions.Single(v => v.Version == stored.ActiveVersion).DepthReason);
    }

    [Fact]
    public async Task Augment_runs_the_backbone_once_per_view_at_training_time_never_at_predict_time_and_is_stored_with_the_version()
    {
        // Arrange: classes no other test of the suite sends, so nothing is in the backbone's cache yet.
        const int views = 2;
        var images = SampleImages.Load("train", "pullover", "sandal").GroupBy(s => s.Label).SelectMany(g => g.Take(3)).ToList();
        var before = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Act
        var progress = await fixture.TrainAsync(
            new HeadSpec { Name = "augmented", Kind = HeadKind.Classifier, Depth = HeadDepth.Probe, Augment = views, Epochs = 2, Seed = 7 },
            images.Select(StackFixture.Labelled));
        var trained = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);
        var reply = await fixture.Client.PredictAsync(new PredictRequest
        {
            Image = ByteString.CopyFrom(images[0].ReadBytes()), Heads = { "augmented" },
        }, fixture.Stack.PredictHeaders, DateTime.UtcNow.AddMinutes(1));
        var predicted = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Assert
        Assert.Equal(TrainPhase.Published, progress[^1].Phase);
        var runs = images.Count * (1 + views);
        Assert.Equal(runs, progress.Last(p => p.Phase == TrainPhase.Extracting).ImagesDone);
        Assert.Equal(runs, trained.Sum("graft_backbone_inferences_total") - before.Sum("graft_backbone_inferences_total"));
        Assert.Contains(progress, p => p.Message.Contains($"{views} augmented view(s) per image", StringComparison.Ordinal));
        Assert.Equal(views, progress[^1].Published.Spec.Augment); // stored with the version, so `graft heads show` reports it
        // The original view was extracted for training: Predict reads it from the cache and runs no augmented view.
        Assert.True(reply.CacheHit);
        Assert.Equal(0, predicted.Sum("graft_backbone_inferences_total") - trained.Sum("graft_backbone_inferences_total"));
    }

    [Theory]
    [InlineData("depth", 99, 0)]
    [InlineData("augment", 0, 17)]
    [InlineData("augment", 0, -1)]
    public async Task A_bad_depth_or_augment_is_refused_before_any_backbone_run_naming_the_field(string field, int depth, int augment)
    {
        // Arrange
        var spec = new HeadSpec { Name = "bad-" + field, Kind = HeadKind.Classifier, Depth = (HeadDepth)depth };
        if (augment != 0)
        {
            spec.Augment = augment;
        }

        // Act
        var failure = await Assert.ThrowsAsync<RpcException>(() => fixture.TrainAsync(spec, fixture.Train.Take(4).Select(StackFixture.Labelled)));

        // Assert
        Assert.Equal(StatusCode.InvalidArgument, failure.StatusCode);
        Assert.Contains($"spec.{field}", failure.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_fine_tuning_job_too_large_for_the_training_bound_fails_at_once_naming_the_option()
    {
        // Arrange: 6 images x 17 views x 25,088 last-block values = 2.56 M values, over the stack's 2 M.
        var spec = new HeadSpec { Name = "too-large", Kind = HeadKind.Classifier, Depth = HeadDepth.LastBlock, Augment = 16 };
        var before = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Act
        var failure = await Assert.ThrowsAsync<RpcException>(() => fixture.TrainAsync(spec, fixture.Train.Take(6).Select(StackFixture.Labelled)));
        var after = await fixture.Stack.Backbone.ScrapeMetricsAsync(generatedAfter: DateTime.UtcNow);

        // Assert
        Assert.Equal(StatusCode.ResourceExhausted, failure.StatusCode);
        Assert.Contains("Graft:Gateway:MaxTrainingValues", failure.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("last-block", failure.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, after.Sum("graft_backbone_inferences_total") - before.Sum("graft_backbone_inferences_total"));
    }
}

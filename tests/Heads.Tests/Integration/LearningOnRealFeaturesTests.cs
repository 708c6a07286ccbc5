using Graft.Heads.Tests.Support;
using Graft.V1;
using Xunit.Abstractions;

namespace Graft.Heads.Tests.Integration;

/// <summary>Real TorchSharp heads trained over gRPC on real ResNet18 features of the committed samples,
/// judged on the held-out test images through Predict.</summary>
[Collection(FashionCollection.Name)]
public sealed class LearningOnRealFeaturesTests(FashionFeatures fashion, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempRegistry _dir = new();
    private HeadsHost _host = null!;

    public Task InitializeAsync()
    {
        _host = new HeadsHost(_dir.Path);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task A_classifier_on_ResNet18_features_is_far_better_than_chance_on_held_out_images()
    {
        var spec = TrainCalls.Spec("fashion-class", HeadKind.Classifier, fashion.Fingerprint, epochs: 40);

        var published = await _host.Client.TrainPublishedAsync(spec, fashion.Train.Select(s => s.ClassRow()).ToList());
        var correct = 0;
        foreach (var sample in fashion.Test)
        {
            var reply = await _host.Client.PredictAsync(TrainCalls.Request(fashion.Fingerprint, sample.Features, "fashion-class"));
            correct += reply.Outputs[0].Top[0].Label == sample.Label ? 1 : 0;
        }
        var accuracy = (double)correct / fashion.Test.Count;
        output.WriteLine($"held-out accuracy {accuracy:P1} over {fashion.Test.Count} images (chance 10%); validation accuracy {published.Metrics.Accuracy:P1}, baseline {published.Metrics.BaselineAccuracy:P1}");

        // 10 balanced classes: chance is 0.10. A linear read-out of ImageNet features separates Fashion-MNIST classes well.
        Assert.True(accuracy >= 0.5, $"held-out accuracy {accuracy:P1} is not clearly above chance (10%)");
        Assert.Equal(10, published.Labels.Count);
        Assert.Equal(100, published.Metrics.ConfusionMatrix.Count);
        Assert.Equal(published.Metrics.ValidationRows, published.Metrics.ConfusionMatrix.Sum());
        Assert.Equal(10, published.Metrics.PerClass.Count);
        Assert.True(published.Metrics.Accuracy > published.Metrics.BaselineAccuracy);
    }

    [Fact]
    public async Task A_regressor_on_ResNet18_features_beats_predicting_the_training_mean_on_held_out_images()
    {
        var spec = TrainCalls.Spec("fashion-length", HeadKind.Regressor, fashion.Fingerprint, epochs: 60);

        var published = await _host.Client.TrainPublishedAsync(spec, fashion.Train.Select(s => s.LengthRow()).ToList());
        var trainMean = fashion.Train.Average(s => s.Length);
        double modelError = 0, meanError = 0;
        foreach (var sample in fashion.Test)
        {
            var reply = await _host.Client.PredictAsync(TrainCalls.Request(fashion.Fingerprint, sample.Features, "fashion-length"));
            modelError += Math.Abs(reply.Outputs[0].Value - sample.Length);
            meanError += Math.Abs(trainMean - sample.Length);
        }
        modelError /= fashion.Test.Count;
        meanError /= fashion.Test.Count;
        output.WriteLine($"held-out MAE {modelError:F2} vs {meanError:F2} for the training mean; stored validation MAE {published.Metrics.Mae:F2}, baseline {published.Metrics.BaselineMae:F2}, R² {published.Metrics.R2:F2}");

        Assert.True(modelError < 0.8 * meanError, $"held-out MAE {modelError:F2} does not beat the mean's {meanError:F2}");
        Assert.True(published.Metrics.Mae < published.Metrics.BaselineMae);
        Assert.True(published.Metrics.R2 > 0);
    }
}

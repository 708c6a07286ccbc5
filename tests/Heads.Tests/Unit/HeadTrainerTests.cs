using Graft.Heads.Tests.Support;
using Graft.Heads.Training;
using Graft.V1;

namespace Graft.Heads.Tests.Unit;

public sealed class HeadTrainerTests
{
    [Fact]
    public void The_same_seed_and_data_give_bit_identical_weights_even_with_dropout()
    {
        var settings = Tiny.Settings("det", HeadKind.Classifier, s => { s.Dropout = 0.5; s.Epochs = 8; });
        var data = Tiny.Set(settings, Synthetic.Classified(60, 16, 3));

        var a = Tiny.Trainer().Train(settings, data, null, CancellationToken.None);
        var b = Tiny.Trainer().Train(settings, data, null, CancellationToken.None);

        Assert.Equal(a.Weights.Select(w => w.Name), b.Weights.Select(w => w.Name));
        for (var i = 0; i < a.Weights.Count; i++)
        {
            Assert.Equal(a.Weights[i].Data, b.Weights[i].Data);
        }
        Assert.Equal(a.Manifest.Metrics.FinalTrainLoss, b.Manifest.Metrics.FinalTrainLoss);
    }

    [Fact]
    public void A_classifier_holds_out_every_class_in_proportion_so_the_majority_baseline_means_something()
    {
        // 4 balanced classes of 25 rows, 20 % validation: 5 rows of each class, whatever the seed.
        var settings = Tiny.Settings("strata", HeadKind.Classifier, s => { s.ValidationFraction = 0.2; s.Epochs = 2; s.Seed = 7; });

        var head = Tiny.Trainer().Train(settings, Tiny.Set(settings, Synthetic.Classified(100, 8, 4)), null, CancellationToken.None);

        Assert.All(head.Manifest.Metrics.PerClass, c => Assert.Equal(5, c.Support));
        Assert.Equal(0.25, head.Manifest.Metrics.BaselineAccuracy, 6);
    }

    [Fact]
    public void A_different_seed_gives_different_weights()
    {
        var first = Tiny.Settings("det", HeadKind.Regressor, s => s.Seed = 1);
        var second = Tiny.Settings("det", HeadKind.Regressor, s => s.Seed = 2);
        var rows = Synthetic.Regressed(40, 8);

        var a = Tiny.Trainer().Train(first, Tiny.Set(first, rows), null, CancellationToken.None);
        var b = Tiny.Trainer().Train(second, Tiny.Set(second, rows), null, CancellationToken.None);

        Assert.NotEqual(a.Weights[0].Data, b.Weights[0].Data);
    }

    [Fact]
    public void Standardisation_statistics_are_fitted_on_training_rows_and_stored()
    {
        var settings = Tiny.Settings("norm", HeadKind.Regressor, s => s.ValidationFraction = 0);
        var rows = Synthetic.Regressed(50, 4);
        var data = Tiny.Set(settings, rows);

        var head = Tiny.Trainer().Train(settings, data, null, CancellationToken.None);

        var expectedMean = Enumerable.Range(0, 4).Select(j => rows.Average(r => r.Features[j])).ToArray();
        for (var j = 0; j < 4; j++)
        {
            Assert.Equal(expectedMean[j], head.Manifest.FeatureMean[j], 4);
        }
        Assert.Equal(rows.Average(r => r.Value), head.Manifest.TargetMean, 6);
        Assert.True(head.Manifest.TargetStd > 1, "target spread is about 10 units, so its standard deviation is stored");
    }

    [Fact]
    public void Early_stopping_ends_training_when_validation_loss_stops_improving()
    {
        // Targets are pure noise: validation loss cannot keep improving, so patience must end the run early.
        var random = new Random(3);
        var rows = Synthetic.Regressed(80, 16);
        foreach (var row in rows)
        {
            row.Value = random.NextDouble();
        }
        var settings = Tiny.Settings("stop", HeadKind.Regressor, s => { s.Epochs = 400; s.Patience = 3; s.LearningRate = 1e-2; });

        var head = Tiny.Trainer().Train(settings, Tiny.Set(settings, rows), null, CancellationToken.None);

        Assert.InRange(head.Manifest.Metrics.EpochsRun, 4, 399);
    }

    [Fact]
    public void Progress_is_reported_once_per_epoch_with_the_validation_metric()
    {
        var settings = Tiny.Settings("progress", HeadKind.Classifier, s => s.Epochs = 4);
        var reports = new List<EpochReport>();

        Tiny.Trainer().Train(settings, Tiny.Set(settings, Synthetic.Classified(30, 4, 2)), new SyncProgress(reports.Add), CancellationToken.None);

        Assert.Equal([1, 2, 3, 4], reports.Select(r => r.Epoch));
        Assert.All(reports, r => Assert.Equal("accuracy", r.MetricName));
    }

    [Fact]
    public void A_cancelled_job_stops_with_OperationCanceledException()
    {
        var settings = Tiny.Settings("cancel", HeadKind.Classifier, s => s.Epochs = 10_000);
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(r => { if (r.Epoch == 2) { cts.Cancel(); } });

        Assert.ThrowsAny<OperationCanceledException>(() =>
            Tiny.Trainer().Train(settings, Tiny.Set(settings, Synthetic.Classified(30, 4, 2)), progress, cts.Token));
    }

    [Fact]
    public void Classification_metrics_count_the_confusion_matrix_by_true_row_and_predicted_column()
    {
        // truth:     a a a b b c
        // predicted: a a b b c c
        var m = HeadTrainer.ClassificationMetrics([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2], ["a", "b", "c"], majorityClasses: 0);

        Assert.Equal([2, 1, 0, 0, 1, 1, 0, 0, 1], m.ConfusionMatrix);
        Assert.Equal(4.0 / 6, m.Accuracy, 9);
        Assert.Equal(3.0 / 6, m.BaselineAccuracy, 9);
        Assert.Equal(1.0, m.PerClass[0].Precision, 9);
        Assert.Equal(2.0 / 3, m.PerClass[0].Recall, 9);
        Assert.Equal(0.5, m.PerClass[1].Precision, 9);
        Assert.Equal(3, m.PerClass[0].Support);
    }

    [Fact]
    public void Regression_metrics_compare_with_predicting_the_training_mean()
    {
        var m = HeadTrainer.RegressionMetrics([1, 2, 3], [1, 2, 5], trainingMean: 2);

        Assert.Equal(2.0 / 3, m.Mae, 9);
        Assert.Equal(Math.Sqrt(4.0 / 3), m.Rmse, 9);
        Assert.Equal(4.0 / 3, m.BaselineMae, 9);
        Assert.Equal(1 - 4 / (78.0 / 9), m.R2, 9);
    }

    private sealed class SyncProgress(Action<EpochReport> action) : IProgress<EpochReport>
    {
        public void Report(EpochReport value) => action(value);
    }
}

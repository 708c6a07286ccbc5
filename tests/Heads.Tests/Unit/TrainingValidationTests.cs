using Graft.Heads.Tests.Support;
using Graft.Heads.Training;
using Graft.V1;

namespace Graft.Heads.Tests.Unit;

/// <summary>Every bad spec or row set is refused before training, as INVALID_ARGUMENT naming the field or row.</summary>
public sealed class TrainingValidationTests
{
    [Theory]
    [InlineData("epochs", "spec.epochs")]
    [InlineData("lr0", "spec.learning_rate")]
    [InlineData("lrneg", "spec.learning_rate")]
    [InlineData("batch", "spec.batch_size")]
    [InlineData("validation", "spec.validation_fraction")]
    [InlineData("dropout", "spec.dropout")]
    [InlineData("hidden", "spec.hidden.sizes[1]")]
    [InlineData("fingerprint", "backbone_fingerprint")]
    [InlineData("kind", "spec.kind")]
    [InlineData("patience", "patience")]
    public void Absurd_specs_are_refused_naming_the_field(string what, string field)
    {
        Action<HeadSpec> edit = what switch
        {
            "epochs" => s => s.Epochs = 10_001,
            "lr0" => s => s.LearningRate = 0,
            "lrneg" => s => s.LearningRate = -1,
            "batch" => s => s.BatchSize = 0,
            "validation" => s => s.ValidationFraction = 0.95,
            "dropout" => s => s.Dropout = 1,
            "hidden" => s => s.Hidden = new HiddenLayers { Sizes = { 16, 0 } },
            "fingerprint" => s => s.BackboneFingerprint = "",
            "kind" => s => s.Kind = HeadKind.Unspecified,
            "patience" => s => { s.Patience = 3; s.ValidationFraction = 0; },
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };

        var e = Assert.Throws<HeadException>(() => Tiny.Settings("h", HeadKind.Classifier, edit));

        Assert.Equal(HeadErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Defaults_match_the_documented_ones()
    {
        var s = TrainingSettings.FromSpec(new HeadSpec { Name = "h", Kind = HeadKind.Classifier, BackboneFingerprint = "f" }, Tiny.Options());

        Assert.Equal(30, s.Hyperparameters.Epochs);
        Assert.Equal(1e-3, s.Hyperparameters.LearningRate);
        Assert.Equal(32, s.Hyperparameters.BatchSize);
        Assert.Equal(0.2, s.Hyperparameters.ValidationFraction);
        Assert.Equal(42, s.Hyperparameters.Seed);
        Assert.Equal([256], s.Hyperparameters.HiddenSizes);
    }

    [Theory]
    [InlineData(HeadDepth.LastBlock, 3e-4)]
    [InlineData(HeadDepth.LastStage, 1e-4)]
    public void A_fine_tuning_depth_defaults_to_15_epochs_on_every_row_and_a_spec_can_still_ask_for_a_hold_out(HeadDepth depth, double tailRate)
    {
        var defaults = TrainingSettings.FromSpec(new HeadSpec { Name = "h", Kind = HeadKind.Classifier, BackboneFingerprint = "f", Depth = depth }, Tiny.Options());
        var asked = TrainingSettings.FromSpec(
            new HeadSpec { Name = "h", Kind = HeadKind.Classifier, BackboneFingerprint = "f", Depth = depth, Epochs = 30, ValidationFraction = 0.2, Patience = 3 }, Tiny.Options());

        Assert.Equal(15, defaults.Hyperparameters.Epochs);
        Assert.Equal(0, defaults.Hyperparameters.ValidationFraction);
        Assert.Equal(tailRate, defaults.Hyperparameters.TailLearningRate);
        Assert.Equal((30, 0.2, 3), (asked.Hyperparameters.Epochs, asked.Hyperparameters.ValidationFraction, asked.Hyperparameters.Patience));
        var patienceAlone = Assert.Throws<HeadException>(() => TrainingSettings.FromSpec(
            new HeadSpec { Name = "h", Kind = HeadKind.Classifier, BackboneFingerprint = "f", Depth = depth, Patience = 3 }, Tiny.Options()));
        Assert.Contains("fine-tuning depths hold out none unless asked", patienceAlone.Message);
    }

    [Fact]
    public void An_empty_hidden_list_means_a_linear_probe()
    {
        var s = Tiny.Settings("h", HeadKind.Classifier, spec => spec.Hidden = new HiddenLayers());

        Assert.Empty(s.Hyperparameters.HiddenSizes);
    }

    [Fact]
    public void An_empty_training_set_is_refused()
    {
        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Regressor), []));

        Assert.Equal(HeadErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void A_classifier_with_a_single_class_is_refused()
    {
        var rows = Synthetic.Classified(10, 4, 1);

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Classifier), rows));

        Assert.Contains("at least two classes", e.Message);
        Assert.Contains("'c0'", e.Message);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void A_non_finite_feature_is_refused_naming_its_row(float bad)
    {
        var rows = Synthetic.Classified(10, 4, 2);
        rows[7].Features[2] = bad;

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Classifier), rows));

        Assert.Contains("Row 7, feature 2", e.Message);
    }

    [Fact]
    public void A_non_finite_target_is_refused_naming_its_row()
    {
        var rows = Synthetic.Regressed(10, 4);
        rows[4].Value = double.NaN;

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Regressor), rows));

        Assert.Contains("Row 4 has target NaN", e.Message);
    }

    [Fact]
    public void A_row_of_the_wrong_dimension_is_refused_naming_it()
    {
        var rows = Synthetic.Regressed(10, 4);
        rows[3].Features.Add(1f);

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Regressor), rows));

        Assert.Contains("Row 3 has 5 features but row 0 has 4", e.Message);
    }

    [Fact]
    public void Too_few_rows_for_the_validation_split_are_refused()
    {
        var rows = Synthetic.Regressed(3, 4);

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Regressor), rows));

        Assert.Contains("3 rows are too few for validation_fraction 0.2", e.Message);
    }

    [Fact]
    public void A_classifier_with_more_classes_than_the_limit_is_refused()
    {
        var options = new HeadOptions { MaxClasses = 5 };
        var builder = new TrainingSetBuilder(Tiny.Settings("h", HeadKind.Classifier), options);

        var e = Assert.Throws<HeadException>(() =>
        {
            foreach (var row in Synthetic.Classified(12, 2, 6))
            {
                builder.Add(row);
            }
        });

        Assert.Contains("past 5", e.Message);
    }

    [Fact]
    public void A_regressor_row_with_a_label_is_refused()
    {
        var rows = Synthetic.Classified(10, 4, 2);

        var e = Assert.Throws<HeadException>(() => Tiny.Set(Tiny.Settings("h", HeadKind.Regressor), rows));

        Assert.Contains("Row 0 has no numeric target", e.Message);
    }
}

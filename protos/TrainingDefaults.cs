using System.Globalization;

namespace Graft.V1;

/// <summary>What HeadService uses for a <see cref="HeadSpec"/> field the client leaves unset. One place, so the
/// service, the CLI's help and the docs cannot drift apart.</summary>
public static class TrainingDefaults
{
    public const int Epochs = 30;
    public const double LearningRate = 1e-3;
    public const int BatchSize = 32;
    public const double WeightDecay = 1e-4;
    public const double ValidationFraction = 0.2;
    /// <summary>0: early stopping off.</summary>
    public const int Patience = 0;
    /// <summary>Classifiers only; the regressor has no dropout.</summary>
    public const double Dropout = 0.2;
    public const long Seed = 42;
    /// <summary>One hidden layer of this size when <c>spec.hidden</c> is absent.</summary>
    public const int HiddenSize = 256;
    /// <summary>Adam learning rate of the fine-tuned backbone layers (fine-tuning depths only): below the new layers'
    /// rate, because they start pretrained and the new layers start random. Measured on the bench's curve (last block,
    /// 15 epochs): 3e-4 beat the prototype's 1e-4 at 10, 30 and 100 images per class (71.8 / 82.0 / 85.8 % against
    /// 70.7 / 80.9 / 84.9 %).</summary>
    public const double TailLearningRate = 3e-4;
    /// <summary>The last stage's tail rate: twice the last block's weights overfit at 3e-4 (81.8 % at 100 images per
    /// class, below the last block's 85.8 %) and reached 86.0 % at 1e-4.</summary>
    public const double LastStageTailLearningRate = 1e-4;

    /// <summary>The tail learning rate a spec that sets none gets at <paramref name="depth"/>.</summary>
    public static double TailLearningRateFor(HeadDepth depth) => depth == HeadDepth.LastStage ? LastStageTailLearningRate : TailLearningRate;
    /// <summary>Epochs of a fine-tuning depth (last-block, last-stage). Measured on Fashion-MNIST, 100 images per class,
    /// last block (bench/RESULTS.md): 15 epochs on every image 84.9 % in 113 s; 30 epochs with 20 % held out 84.4 % in
    /// 284 s; early stopping (patience 3) on a 20 % hold-out stopped at epoch 7 with 83.1 %.</summary>
    public const int FineTuneEpochs = 15;
    /// <summary>Fine-tuning depths train on every image by default (see <see cref="FineTuneEpochs"/>); their metrics are
    /// then training metrics (named so). Ask for a hold-out to get validation metrics.</summary>
    public const double FineTuneValidationFraction = 0;

    /// <summary>The epochs a spec that sets none gets at <paramref name="depth"/>.</summary>
    public static int EpochsFor(HeadDepth depth) => depth.FineTunes() ? FineTuneEpochs : Epochs;

    /// <summary>The validation fraction a spec that sets none gets at <paramref name="depth"/>.</summary>
    public static double ValidationFractionFor(HeadDepth depth) => depth.FineTunes() ? FineTuneValidationFraction : ValidationFraction;

    /// <summary>A default as the CLI's help prints it.</summary>
    public static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);
}

namespace Graft.Bench;

/// <summary>How much of everything to run. <see cref="Full"/> is the committed run; <see cref="Quick"/> is a smoke test.</summary>
public sealed record BenchPlan(
    string Name,
    int RawOrtImages,
    int[] Concurrency,
    int RequestsPerLevel,
    int HeadsComparisonRequests,
    int TrainPerClass,
    int TestImages,
    int[] CurvePerClass,
    int HeadEpochs,
    int MlNetPipelineImages,
    int SweepRounds,
    (int Rows, int Epochs)[] Grid512,
    (int Rows, int Epochs)[] Grid25088,
    FineTunedPredictPlan FineTunedPredict)
{
    public static readonly BenchPlan Full = new(
        "full", RawOrtImages: 320, Concurrency: [1, 4, 16, 32], RequestsPerLevel: 240, HeadsComparisonRequests: 200,
        TrainPerClass: 100, TestImages: 2000, CurvePerClass: [10, 30, 100, 300], HeadEpochs: 30,
        MlNetPipelineImages: 1000, SweepRounds: 3,
        Grid512: [(1000, 5), (1000, 10), (1000, 20), (1000, 40), (4000, 10), (16000, 10)],
        Grid25088: [(250, 10), (500, 5), (500, 10), (500, 20), (1000, 10)],
        FineTunedPredict: new(PerClass: 30, FineTunedEpochs: 3, Rounds: 5, CallsAtConcurrency1: 24, CallsAtConcurrency16: 64));

    public static readonly BenchPlan Quick = new(
        "quick", RawOrtImages: 32, Concurrency: [1, 4, 16, 32], RequestsPerLevel: 40, HeadsComparisonRequests: 20,
        TrainPerClass: 10, TestImages: 100, CurvePerClass: [3, 10, 20], HeadEpochs: 5,
        MlNetPipelineImages: 40, SweepRounds: 1,
        Grid512: [(200, 2), (200, 4), (800, 2)],
        Grid25088: [(50, 2), (100, 2)],
        FineTunedPredict: new(PerClass: 3, FineTunedEpochs: 1, Rounds: 2, CallsAtConcurrency1: 6, CallsAtConcurrency16: 16));
}

/// <summary>The fine-tuned against frozen Predict row (issue 11): both heads trained through the Gateway on the first
/// <see cref="PerClass"/> training images per class, then <see cref="Rounds"/> interleaved rounds, each running every
/// case once at concurrency 1 and at 16 with that many calls.</summary>
public sealed record FineTunedPredictPlan(int PerClass, int FineTunedEpochs, int Rounds, int CallsAtConcurrency1, int CallsAtConcurrency16);

using Graft.Bench.Speed;

namespace Graft.Bench;

/// <summary>Everything one run measured; written to RESULTS.md, results.json and the plots.</summary>
public sealed class Results
{
    public required MachineInfo Machine { get; init; }
    public required string Plan { get; init; }
    public double LoadAverageEnd { get; set; }
    public double TotalSeconds { get; set; }

    // Speed
    /// <summary>The raw layout sweep; the best batch-16 throughput is the limit every ratio divides by.</summary>
    public List<RawLayoutResult> RawLayouts { get; } = [];
    public RawLayout? BestRawLayout { get; set; }
    public LatencyStats? RawOrtBatch1 { get; set; }
    public LatencyStats? RawOrtBatch16 { get; set; }
    /// <summary>The limit measured again right after the Predict rows (services up and idle), to bracket them.</summary>
    public LatencyStats? RawOrtBatch1Repeat { get; set; }
    public LatencyStats? RawOrtBatch16Repeat { get; set; }

    /// <summary>The baselines the ratios divide by: the mean of the two measurements of the limit.</summary>
    public double? RawOrt1Baseline => Mean(RawOrtBatch1, RawOrtBatch1Repeat);
    public double? RawOrt16Baseline => Mean(RawOrtBatch16, RawOrtBatch16Repeat);

    private static double? Mean(LatencyStats? a, LatencyStats? b) =>
        new[] { a, b }.Where(s => s is not null).Select(s => s!.Throughput).DefaultIfEmpty(double.NaN).Average() is var m && double.IsNaN(m) ? null : m;
    public double RawOrtBatchMaxDifference { get; set; }
    /// <summary>CPU ms per image of the raw ORT batch-16 run (the harness process alone runs it).</summary>
    public double RawOrt16CpuMsPerImage { get; set; }
    public List<LevelResult> Extract { get; } = [];
    public List<LevelResult> Predict { get; } = [];
    public LatencyStats? PredictOneHead { get; set; }
    public LatencyStats? PredictTenHeads { get; set; }
    public List<TrainingTime> HeadTraining { get; } = [];
    public List<TrainRun> Retrain { get; } = [];
    public MlNetPipeline? MlNet { get; set; }

    // Quality
    public int TrainImages { get; set; }
    public int TestImages { get; set; }
    public double? GraftClassifierAccuracy { get; set; }
    public double? GraftLinearProbeAccuracy { get; set; }
    public double? GraftRegressorMae { get; set; }
    public double? MlNetClassifierAccuracy { get; set; }
    public double? MlNetClassifierSeconds { get; set; }
    public double? MlNetRegressorMae { get; set; }
    public double? MlNetRegressorSeconds { get; set; }
    /// <summary>MAE of predicting the training mean length of the class ML.NET's classifier picked: what class confusions alone cost.</summary>
    public double? PredictedClassMeanMae { get; set; }
    public double NoiseFloorExpectedMae { get; set; }
    public double NoiseFloorOracleMae { get; set; }
    public double? CnnAccuracy { get; set; }
    public double? CnnSeconds { get; set; }
    public int? CnnEpochs { get; set; }
    public List<CurvePoint> Curve { get; } = [];

    /// <summary>Rounds of raw ORT b16, Gateway Predict c16 and the ML.NET pipeline back to back (see <c>--paired</c>).</summary>
    public List<PairedRound> Paired { get; } = [];
    public double PairedLoadAverage { get; set; }
    /// <summary>Profile of the 10-head cost: HeadService Predict alone on one feature vector, 1 head against 10 (concurrency 1).</summary>
    public LatencyStats? HeadsOnlyOne { get; set; }
    public LatencyStats? HeadsOnlyTen { get; set; }

    /// <summary>Issue 11's depth/accuracy curve (<c>--finetune-curve</c>; null when not run).</summary>
    public Graft.Bench.Quality.FineTuneCurveResults? FineTune { get; set; }

    /// <summary>Issue 11's fine-tuned against frozen head Predict row (section 4b; <c>--finetune-latency</c> alone; null when not run).</summary>
    public FineTunedPredictResults? FineTunedPredict { get; set; }

    /// <summary>The int8 backbone's rows (null when not run).</summary>
    public Int8Results? Int8 { get; set; }

    public List<string> Notes { get; } = [];
    public List<string> Pending { get; } = [];
}

public sealed record MachineInfo(string Cpu, int Cores, string Os, string Dotnet, DateTimeOffset Date, double LoadAverageStart, string Commit);

/// <summary>One concurrency level: its timing, cache hits, the backbone's mean batch size, and CPU ms per image by process.</summary>
public sealed record LevelResult(int Concurrency, LatencyStats Stats, int CacheHits, double MeanBatchSize, Dictionary<string, double> CpuMsPerImage)
{
    /// <summary>The backbone's mean stage times in ms (preprocess and queue per input, run per batch); empty in older results.</summary>
    public Dictionary<string, double> StageMs { get; init; } = [];

    /// <summary>CPU ms per image by process, then by thread name (from /proc/&lt;pid&gt;/task); empty in older results.</summary>
    public Dictionary<string, Dictionary<string, double>> ThreadCpuMsPerImage { get; init; } = [];
}

/// <summary>One head-training timing: the server's training seconds and the client's wall seconds (upload included).</summary>
public sealed record TrainingTime(int Dimension, int Rows, int Epochs, double TrainingSeconds, double WallSeconds);

/// <summary>One Gateway TrainHead call: how many backbone runs it caused per image, and how long it took.</summary>
public sealed record TrainRun(string Head, int Images, double BackboneRunsPerImage, double ExtractSeconds, double TotalSeconds);

public sealed record MlNetPipeline(int Images, double Seconds, double ImagesPerSecond);

/// <summary>Test accuracy at one training-set size for each method (null when not measured).</summary>
public sealed record CurvePoint(int PerClass, double? GraftClassifier, double? GraftLinearProbe, double? MlNet, double? Cnn, double? CnnSeconds);

/// <summary>One round of the paired measurement: the three pipelines one after the other on the same number of images.</summary>
public sealed record PairedRound(int Images, double RawOrt16Seconds, double Predict16Seconds, double MlNetSeconds, double Predict16MeanBatch);

using System.Diagnostics;
using Graft.Bench.Shared;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Graft.Bench.MlNet;

/// <summary>ML.NET's standard trainers on the very features Graft's heads see: LbfgsMaximumEntropy for the class, Sdca for the length.</summary>
internal static class TrainerBaseline
{
    private sealed class Row
    {
        [VectorType]
        public float[] Features { get; set; } = [];
        public uint Label { get; set; }
        public float Length { get; set; }
    }

    public sealed record Result(int TrainRows, int TestRows, int Dimension,
        double ClassifierAccuracy, double ClassifierTrainSeconds,
        double RegressorMae, double RegressorTrainSeconds);

    public static Result Run(string trainPath, string testPath)
    {
        var train = FeatureFile.Read(trainPath);
        var test = FeatureFile.Read(testPath);
        var dimension = train[0].Features.Length;
        var ml = new MLContext(seed: 42);
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, dimension);
        // Key labels 1..K (0 is "missing" for ML.NET keys).
        schema[nameof(Row.Label)].ColumnType = new KeyDataViewType(typeof(uint), 10);
        IDataView Load(IEnumerable<FeatureRow> rows) => ml.Data.LoadFromEnumerable(
            rows.Select(r => new Row { Features = r.Features, Label = (uint)r.Label + 1, Length = r.Length }).ToList(), schema);
        var trainView = Load(train);
        var testView = Load(test);

        // Features are standardised for both trainers, as Graft's heads standardise theirs.
        var classifier = ml.Transforms.NormalizeMeanVariance("Features")
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"));
        var timer = Stopwatch.StartNew();
        var classModel = classifier.Fit(trainView);
        var classSeconds = timer.Elapsed.TotalSeconds;
        var classMetrics = ml.MulticlassClassification.Evaluate(classModel.Transform(testView), "Label");

        var regressor = ml.Transforms.NormalizeMeanVariance("Features")
            .Append(ml.Regression.Trainers.Sdca("Length", "Features"));
        timer.Restart();
        var regModel = regressor.Fit(trainView);
        var regSeconds = timer.Elapsed.TotalSeconds;
        var regMetrics = ml.Regression.Evaluate(regModel.Transform(testView), "Length");

        return new Result(train.Count, test.Count, dimension, classMetrics.MicroAccuracy, classSeconds,
            regMetrics.MeanAbsoluteError, regSeconds);
    }
}

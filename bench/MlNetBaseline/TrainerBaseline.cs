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
        public string Label { get; set; } = "";
        public float Length { get; set; }
    }

    public sealed record Result(int TrainRows, int TestRows, int Dimension,
        double ClassifierAccuracy, double ClassifierTrainSeconds,
        double RegressorMae, double RegressorTrainSeconds, double PredictedClassMeanMae);

    private sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
    }

    public static Result Run(string trainPath, string testPath)
    {
        var train = FeatureFile.Read(trainPath);
        var test = FeatureFile.Read(testPath);
        var dimension = train[0].Features.Length;
        var ml = new MLContext(seed: 42);
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, dimension);
        IDataView Load(IEnumerable<FeatureRow> rows) => ml.Data.LoadFromEnumerable(
            rows.Select(r => new Row { Features = r.Features, Label = r.Label.ToString(System.Globalization.CultureInfo.InvariantCulture), Length = r.Length }).ToList(), schema);
        var trainView = Load(train);
        var testView = Load(test);

        // Features are standardised for both trainers, as Graft's heads standardise theirs.
        var classifier = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.NormalizeMeanVariance("Features"))
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var timer = Stopwatch.StartNew();
        var classModel = classifier.Fit(trainView);
        var classSeconds = timer.Elapsed.TotalSeconds;
        var classPredictions = classModel.Transform(testView);
        var classMetrics = ml.MulticlassClassification.Evaluate(classPredictions, "Label");

        // A reference for the regressors: predict the training mean length of the class the classifier picked.
        // Its MAE is the error that class confusions alone cost on these features.
        var classMeans = train.GroupBy(r => r.Label).ToDictionary(g => g.Key, g => g.Average(r => r.Length));
        var predicted = ml.Data.CreateEnumerable<Prediction>(classPredictions, reuseRowObject: false).Select(p => int.Parse(p.PredictedLabel, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var predictedClassMeanMae = test.Select((row, i) => Math.Abs(classMeans.GetValueOrDefault(predicted[i]) - row.Length)).Average();

        var regressor = ml.Transforms.NormalizeMeanVariance("Features")
            .Append(ml.Regression.Trainers.Sdca("Length", "Features"));
        timer.Restart();
        var regModel = regressor.Fit(trainView);
        var regSeconds = timer.Elapsed.TotalSeconds;
        var regMetrics = ml.Regression.Evaluate(regModel.Transform(testView), "Length");

        return new Result(train.Count, test.Count, dimension, classMetrics.MicroAccuracy, classSeconds,
            regMetrics.MeanAbsoluteError, regSeconds, predictedClassMeanMae);
    }
}

using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Heads.Tails;
using Graft.Heads.Tests.Integration;
using Graft.Heads.Training;
using Graft.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Graft.Heads.Tests.Tails;

/// <summary>Numbers for the issue note, on the committed samples (30 train / 10 test images per class): the same
/// training protocol with the tail frozen (a linear probe on the final features) and fine-tuned from each cut point.
/// Run: GRAFT_HEADS_MEASURE=1 dotnet test tests/Heads.Tests --filter FineTuneMeasurements --logger "console;verbosity=detailed".</summary>
public sealed class FineTuneMeasurements(ITestOutputHelper output)
{
    [MeasureFact]
    public void Held_out_accuracy_of_frozen_and_fine_tuned_tails_on_the_committed_samples()
    {
        var profile = BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);
        using var backbone = BackboneModel.Load(profile, "cpu", ExecutionLayout.Resolve(1, 0, false, Environment.ProcessorCount), NullLogger.Instance);
        var preprocessor = Preprocessor.Create(profile, 40_000_000);
        var train = SampleImages.Load("train");
        var test = SampleImages.Load("test");
        var labels = train.Select(s => s.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var outputs = backbone.CutPoints.Select(c => c.Output).ToList();
        float[][][] Extract(IReadOnlyList<SampleImages.Sample> images) =>
            images.Chunk(16).SelectMany(chunk => backbone.Run(chunk.Select(s => preprocessor.Preprocess(File.ReadAllBytes(s.Path))).ToList(), outputs)).ToArray();
        var trainRows = Extract(train);
        var testRows = Extract(test);

        foreach (var (cut, k) in backbone.CutPoints.Select((c, k) => (c, k)))
        {
            var data = new TrainingSet(train.Count, (int)cut.Dimension, trainRows.SelectMany(r => r[k]).ToArray(), null,
                train.Select(s => labels.IndexOf(s.Label)).ToArray(), labels);
            foreach (var tailRate in new[] { 0.0, 1e-4 })
            {
                using var tail = OnnxTail.FromOnnx(cut.TailOnnx);
                var result = FineTuner.TrainClassifier(tail, data, new FineTuneSettings { TailLearningRate = tailRate }, null, CancellationToken.None);
                tail.eval();
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                var x = tensor(testRows.SelectMany(r => r[k]).ToArray(), [test.Count, .. cut.Shape]);
                var weight = result.Weights.Single(w => w.Name == "head.weight");
                var bias = result.Weights.Single(w => w.Name == "head.bias");
                var logits = tail.call(x).matmul(tensor(weight.Data, weight.Shape).t()).add(tensor(bias.Data, bias.Shape));
                var truth = tensor(test.Select(s => (long)labels.IndexOf(s.Label)).ToArray());
                var accuracy = logits.argmax(1).eq(truth).to(ScalarType.Float32).mean().item<float>();
                var line = $"{(tailRate == 0 ? "frozen tail (linear probe on final features)" : $"fine-tuned from {cut.Name}")}: " +
                    $"held-out accuracy {accuracy:P1} on {test.Count} images, validation {result.ValidationAccuracy:P1}, {result.EpochsRun} epochs, {result.TrainingSeconds:F0} s training";
                output.WriteLine(line);
                // Also as it happens, for long runs: GRAFT_HEADS_MEASURE_LOG names a file to append to.
                if (Environment.GetEnvironmentVariable("GRAFT_HEADS_MEASURE_LOG") is { Length: > 0 } log) File.AppendAllText(log, line + Environment.NewLine);
            }
        }
    }
}

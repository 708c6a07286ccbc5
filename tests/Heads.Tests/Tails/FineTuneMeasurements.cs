using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Heads.Tails;
using Graft.Heads.Tests.Integration;
using Graft.Heads.Training;
using Graft.V1;
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

        var options = Graft.Heads.Tests.Support.Tiny.Options();
        var trainer = new HeadTrainer(Microsoft.Extensions.Options.Options.Create(options));
        foreach (var (cut, k) in backbone.CutPoints.Select((c, k) => (c, k)))
        {
            foreach (var tailRate in new[] { 0.0, 1e-4 })
            {
                // The fine-tuning protocol of the issue's prototype: 15 epochs, patience 3, linear layer at 1e-3.
                var settings = TrainingSettings.FromSpec(new HeadSpec
                {
                    Name = "measure", Kind = HeadKind.Classifier, BackboneFingerprint = "fp", Depth = HeadDepths.TryParse(cut.Name, out var d) ? d : HeadDepth.LastBlock,
                    Epochs = 15, Patience = 3, TailLearningRate = tailRate,
                }, options);
                using var tail = new ReceivedTail(cut.TailOnnx, OnnxTail.FromOnnx(cut.TailOnnx), cut.Name);
                var builder = new TrainingSetBuilder(settings, options, tail);
                foreach (var (sample, values) in train.Zip(trainRows))
                {
                    var row = new FeatureRow { Label = sample.Label };
                    row.Features.AddRange(values[k]);
                    builder.Add(row);
                }
                var trained = trainer.Train(settings, builder.Build(), tail, null, CancellationToken.None);
                using var served = new Graft.Heads.Serving.LoadedHead(trained.Manifest, trained.Weights, CPU, trained.Tail);
                var correct = test.Zip(testRows).Count(p => served.TryRun([], p.Second[k], 1, out var answer) && answer.Top[0].Label == p.First.Label);
                var m = trained.Manifest.Metrics;
                var line = $"{(tailRate == 0 ? $"tail at {cut.Name} frozen (linear probe on final features)" : $"fine-tuned from {cut.Name}")}: " +
                    $"held-out accuracy {(double)correct / test.Count:P1} on {test.Count} images, validation {m.Accuracy:P1}, {m.EpochsRun} epochs, {m.TrainingSeconds:F0} s training";
                output.WriteLine(line);
                // Also as it happens, for long runs: GRAFT_HEADS_MEASURE_LOG names a file to append to.
                if (Environment.GetEnvironmentVariable("GRAFT_HEADS_MEASURE_LOG") is { Length: > 0 } log) File.AppendAllText(log, line + Environment.NewLine);
            }
        }
    }
}

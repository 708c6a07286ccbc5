using Graft.Heads.Registry;
using Graft.Heads.Training;
using Graft.V1;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Graft.Heads.Tests.Support;

/// <summary>Small real heads (trained with TorchSharp on synthetic rows) and registries for unit tests.</summary>
public static class Tiny
{
    public const string Fingerprint = "test-backbone-A";

    public static HeadOptions Options(string registryPath = "./unused") => new() { RegistryPath = registryPath, TrainingThreads = 1 };

    public static HeadTrainer Trainer() => new(Microsoft.Extensions.Options.Options.Create(Options()));

    public static HeadRegistry Registry(string path) => new(Microsoft.Extensions.Options.Options.Create(Options(path)), NullLogger<HeadRegistry>.Instance);

    public static TrainingSettings Settings(string name, HeadKind kind, Action<HeadSpec>? edit = null)
    {
        var spec = new HeadSpec { Name = name, Kind = kind, BackboneFingerprint = Fingerprint, Epochs = 5 };
        edit?.Invoke(spec);
        return TrainingSettings.FromSpec(spec, Options());
    }

    public static TrainingSet Set(TrainingSettings settings, IEnumerable<FeatureRow> rows)
    {
        var builder = new TrainingSetBuilder(settings, Options());
        foreach (var row in rows)
        {
            builder.Add(row);
        }
        return builder.Build();
    }

    public static TrainedHead Head(string name = "tiny", int seed = 1)
    {
        var settings = Settings(name, HeadKind.Classifier);
        return Trainer().Train(settings, Set(settings, Synthetic.Classified(40, 8, 3, seed)), null, CancellationToken.None);
    }

    public static HeadManifest Publish(HeadRegistry registry, string name = "tiny", int seed = 1, bool activate = true)
    {
        var head = Head(name, seed);
        return registry.Publish(head.Manifest, SafeTensors.Serialize(head.Weights), activate);
    }
}

using Graft.Testing;
using Graft.V1;
using Grpc.Core;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Graft.Gateway.Tests;

/// <summary>One stack (three processes) for the whole suite, with a predict token as well as an admin token, a short
/// circuit-breaker window, depth = auto thresholds low enough for the committed samples (fine-tuning from
/// <see cref="AutoLastBlockPerClass"/> images per class), a training-size bound a fine-tuning job with many augmented
/// views exceeds (<see cref="MaxTrainingValues"/>), and two heads trained once from the committed samples through the Gateway.</summary>
public sealed class StackFixture : IAsyncLifetime
{
    /// <summary>Four visually distinct classes keep training small and the classifier's job clear.</summary>
    public static readonly string[] Classes = ["bag", "dress", "sneaker", "trouser"];

    public const string Regressor = "length-cm";
    public const string Classifier = "kind";

    public const int AutoLastBlockPerClass = 4;
    public const long MaxTrainingValues = 2_000_000;

    /// <summary>A classifier that fine-tunes the backbone's last block, on the same classes as <see cref="Classifier"/>.</summary>
    public const string FineTuned = "kind-ft";

    private readonly Lazy<Task<TrainedHeads>> _heads;
    private readonly Lazy<Task<IReadOnlyList<TrainProgress>>> _fineTuned;

    public StackFixture()
    {
        _heads = new Lazy<Task<TrainedHeads>>(TrainHeadsAsync);
        _fineTuned = new Lazy<Task<IReadOnlyList<TrainProgress>>>(async () => await TrainAsync(
            new HeadSpec { Name = FineTuned, Kind = HeadKind.Classifier, Depth = HeadDepth.LastBlock, Epochs = 4, Seed = 7, Description = "garment kind, last block fine-tuned" },
            Train.GroupBy(s => s.Label).SelectMany(g => g.Take(10)).Select(Labelled)));
    }

    /// <summary>The last-block classifier's progress stream, trained on first use (10 images per class, 4 epochs).</summary>
    public Task<IReadOnlyList<TrainProgress>> FineTunedAsync() => _fineTuned.Value;

    public ServiceStack Stack { get; private set; } = null!;

    public IReadOnlyList<SampleImages.Sample> Train { get; } = SampleImages.Load("train", Classes);

    public IReadOnlyList<SampleImages.Sample> Test { get; } = SampleImages.Load("test", Classes);

    public V1.Gateway.GatewayClient Client => Stack.GatewayClient;

    /// <summary>The two heads, trained on first use; every test that needs them awaits the same training.</summary>
    public Task<TrainedHeads> HeadsAsync() => _heads.Value;

    public async Task InitializeAsync()
    {
        Stack = await ServiceStack.StartAsync(new ServiceStackOptions
        {
            PredictToken = "test-predict-" + Guid.NewGuid().ToString("N"),
            GatewayEnvironment = new Dictionary<string, string>
            {
                ["Graft__Gateway__BreakerBreakDuration"] = "00:00:02",
                ["Graft__Gateway__BreakerMinimumThroughput"] = "4",
                ["Graft__Gateway__BreakerSamplingDuration"] = "00:00:03",
                ["Graft__Gateway__MaxReconnectBackoff"] = "00:00:01",
                ["Graft__Gateway__AutoLastBlockPerClass"] = AutoLastBlockPerClass.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Graft__Gateway__MaxTrainingValues"] = MaxTrainingValues.ToString(System.Globalization.CultureInfo.InvariantCulture),
            },
        });
    }

    public async Task DisposeAsync()
    {
        if (Stack is not null)
        {
            await Stack.DisposeAsync();
        }
    }

    /// <summary>Streams a spec and labelled images to TrainHead and collects every progress message.</summary>
    public async Task<List<TrainProgress>> TrainAsync(HeadSpec spec, IEnumerable<LabelledImage> examples, Metadata? headers = null)
    {
        using var call = Client.TrainHead(headers ?? Stack.AdminHeaders, deadline: DateTime.UtcNow.AddMinutes(15));
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRequest { Spec = spec });
            foreach (var example in examples)
            {
                await call.RequestStream.WriteAsync(new TrainHeadRequest { Example = example });
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // The gateway ended the call early (a refused token, a bad example); the response stream below has its status.
        }
        var progress = new List<TrainProgress>();
        await foreach (var step in call.ResponseStream.ReadAllAsync())
        {
            progress.Add(step);
        }
        return progress;
    }

    public static LabelledImage Labelled(SampleImages.Sample s) => new() { Image = Google.Protobuf.ByteString.CopyFrom(s.ReadBytes()), Label = s.Label };

    public static LabelledImage Measured(SampleImages.Sample s) => new() { Image = Google.Protobuf.ByteString.CopyFrom(s.ReadBytes()), Value = s.Length };

    private async Task<TrainedHeads> TrainHeadsAsync()
    {
        var regressor = await TrainAsync(
            new HeadSpec { Name = Regressor, Kind = HeadKind.Regressor, Epochs = 60, Seed = 7, Description = "length in cm" },
            Train.Select(Measured));
        var classifier = await TrainAsync(
            new HeadSpec { Name = Classifier, Kind = HeadKind.Classifier, Epochs = 30, Seed = 7, Description = "garment kind" },
            Train.Select(Labelled));
        return new TrainedHeads(regressor, classifier);
    }
}

/// <summary>The progress streams of the two suite-wide heads.</summary>
public sealed record TrainedHeads(IReadOnlyList<TrainProgress> Regressor, IReadOnlyList<TrainProgress> Classifier);

[CollectionDefinition(Name)]
public sealed class StackCollection : ICollectionFixture<StackFixture>
{
    public const string Name = "gateway stack";
}

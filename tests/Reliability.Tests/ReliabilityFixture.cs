using System.Diagnostics;
using Google.Protobuf;
using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Graft.Reliability.Tests;

/// <summary>One stack (backbone, two HeadService replicas on one registry, gateway) for the whole suite, with two heads
/// trained once through the gateway from the committed samples. Every test that breaks something restores it.</summary>
public sealed class ReliabilityFixture : IAsyncLifetime
{
    /// <summary>Four visually distinct classes keep training small.</summary>
    public static readonly string[] Classes = ["bag", "dress", "sneaker", "trouser"];

    public const string Classifier = "kind";
    public const string Regressor = "length-cm";

    /// <summary>Deadline every test client call carries: generous (the machine is shared) and always set.</summary>
    public static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(30);

    public ReliabilityStack Stack { get; private set; } = null!;

    /// <summary>Ten training images per class: enough for a real head, small enough for a shared 2-core machine.</summary>
    public IReadOnlyList<SampleImages.Sample> Train { get; } = SampleImages.Load("train", Classes).GroupBy(s => s.Label).SelectMany(g => g.Take(10)).ToList();

    public IReadOnlyList<SampleImages.Sample> Test { get; } = SampleImages.Load("test", Classes);

    public V1.Gateway.GatewayClient Client => Stack.GatewayClient;

    public async Task InitializeAsync()
    {
        var clock = Stopwatch.StartNew();
        Stack = await ReliabilityStack.StartAsync();
        FigureLog.Add($"stack start (4 processes): {clock.Elapsed.TotalSeconds:0.0} s");
        clock.Restart();
        foreach (var (spec, examples) in new[]
        {
            (new HeadSpec { Name = Classifier, Kind = HeadKind.Classifier, Epochs = 15, Seed = 7 }, Train.Select(Labelled)),
            (new HeadSpec { Name = Regressor, Kind = HeadKind.Regressor, Epochs = 15, Seed = 7 }, Train.Select(Measured)),
        })
        {
            var progress = await TrainAsync(spec, examples);
            if (progress.LastOrDefault()?.Phase != TrainPhase.Published)
            {
                throw new InvalidOperationException($"Training the suite's head '{spec.Name}' did not publish.\n{Stack.Diagnostics()}");
            }
        }
        FigureLog.Add($"initial heads trained through the gateway ({Train.Count} images each): {clock.Elapsed.TotalSeconds:0.0} s");
    }

    public async Task DisposeAsync()
    {
        if (Stack is not null)
        {
            await Stack.DisposeAsync();
        }
    }

    public static LabelledImage Labelled(SampleImages.Sample s) => new() { Image = ByteString.CopyFrom(s.ReadBytes()), Label = s.Label };

    public static LabelledImage Measured(SampleImages.Sample s) => new() { Image = ByteString.CopyFrom(s.ReadBytes()), Value = s.Length };

    public ByteString TestImage(int i = 0) => ByteString.CopyFrom(Test[i % Test.Count].ReadBytes());

    public Task<PredictReply> PredictAsync(ByteString image, params string[] heads) =>
        Client.PredictAsync(new PredictRequest { Image = image, Heads = { heads } }, Stack.PredictHeaders, DateTime.UtcNow + CallDeadline).ResponseAsync;

    /// <summary>Streams a spec and examples to the gateway's TrainHead; returns every progress message (the last is PUBLISHED).</summary>
    public async Task<List<TrainProgress>> TrainAsync(HeadSpec spec, IEnumerable<LabelledImage> examples, Metadata? headers = null,
        Action<TrainProgress>? onProgress = null, CancellationToken cancellationToken = default)
    {
        using var call = Client.TrainHead(headers ?? Stack.AdminHeaders, DateTime.UtcNow.AddMinutes(10), cancellationToken);
        var progress = new List<TrainProgress>();
        var reading = Task.Run(async () =>
        {
            await foreach (var step in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                progress.Add(step);
                onProgress?.Invoke(step);
            }
        }, CancellationToken.None);
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRequest { Spec = spec }, cancellationToken);
            foreach (var example in examples)
            {
                await call.RequestStream.WriteAsync(new TrainHeadRequest { Example = example }, cancellationToken);
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // The server ended the call early (a refusal); its status comes from the response stream below.
        }
        await reading;
        return progress;
    }

    /// <summary>Predict until one succeeds (after a fault the breaker or a reconnect may need a moment).</summary>
    public async Task<TimeSpan> WaitUntilPredictSucceedsAsync(TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        RpcException? last = null;
        while (clock.Elapsed < limit)
        {
            try
            {
                await Client.PredictAsync(new PredictRequest { Image = TestImage(), Heads = { Classifier } }, Stack.PredictHeaders,
                    DateTime.UtcNow.AddSeconds(10));
                return clock.Elapsed;
            }
            catch (RpcException e)
            {
                last = e;
                await Task.Delay(100);
            }
        }
        throw new TimeoutException($"Predict did not succeed within {limit.TotalSeconds} s; last: {last?.StatusCode} {last?.Status.Detail}\n{Stack.Diagnostics()}");
    }
}

[CollectionDefinition(Name)]
public sealed class ReliabilityCollection : ICollectionFixture<ReliabilityFixture>
{
    public const string Name = "reliability stack";
}

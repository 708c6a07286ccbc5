using Google.Protobuf;
using Graft.Backbone;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using BackboneClient = Graft.V1.Backbone.BackboneClient;

namespace Graft.Heads.Tests.Support;

/// <summary>One committed sample image with its real ResNet18 final features and its activations at the
/// <c>last-block</c> cut point, both from one backbone run.</summary>
public sealed record CutSample(string Label, double Length, float[] Features, CutFeatures Cut)
{
    public FeatureRow ClassRow(long source = 0, bool augmented = false)
    {
        var row = new FeatureRow { Label = Label, Source = source, Augmented = augmented };
        row.Features.AddRange(Cut.Values);
        return row;
    }

    public FeatureRow LengthRow()
    {
        var row = new FeatureRow { Value = Length };
        row.Features.AddRange(Cut.Values);
        return row;
    }

    public FeatureRow FinalClassRow()
    {
        var row = new FeatureRow { Label = Label };
        row.Features.AddRange(Features);
        return row;
    }

    /// <summary>A Predict request carrying both inputs of this image, as the Gateway sends them.</summary>
    public HeadPredictRequest Request(string fingerprint, params string[] heads)
    {
        var request = TrainCalls.Request(fingerprint, Features, heads);
        request.CutFeatures.Add(Cut);
        return request;
    }
}

/// <summary>
/// What a fine-tuning Train call needs, from the real BackboneService (embedded ResNet18 through ONNX Runtime) hosted
/// in-process: the <c>last-block</c> tail as Backbone.GetTail streams it, and a few committed sample images (3 train
/// images for each of 4 classes, 4 test images) extracted with that cut point.
/// </summary>
public sealed class FashionCuts : IAsyncLifetime
{
    public const string CutPoint = "last-block";
    public static readonly string[] Classes = ["ankle-boot", "bag", "sandal", "trouser"];

    public string Fingerprint { get; private set; } = "";

    /// <summary>The tail pieces exactly as GetTail sent them.</summary>
    public IReadOnlyList<TailGraphChunk> Tail { get; private set; } = [];

    public byte[] TailOnnx => Tail.SelectMany(c => c.OnnxChunk.ToByteArray()).ToArray();

    public IReadOnlyList<CutSample> Train { get; private set; } = [];

    public IReadOnlyList<CutSample> Test { get; private set; } = [];

    public async Task InitializeAsync()
    {
        await using var backbone = new InProcessBackbone();
        var client = backbone.Client;
        Fingerprint = (await client.DescribeAsync(new DescribeBackboneRequest())).Fingerprint;
        using (var call = client.GetTail(new GetTailRequest { CutPoint = CutPoint }))
        {
            Tail = await call.ResponseStream.ReadAllAsync().ToListAsync();
        }
        var available = SampleImages.Load("train").Select(s => s.Label).Distinct().ToHashSet();
        if (!Classes.All(available.Contains))
        {
            throw new InvalidOperationException($"The committed samples lack a class of {string.Join(", ", Classes)}; they have {string.Join(", ", available)}.");
        }
        Train = await Extract(client, SampleImages.Load("train", Classes).GroupBy(s => s.Label).SelectMany(g => g.Take(3)));
        Test = await Extract(client, SampleImages.Load("test", Classes).GroupBy(s => s.Label).Select(g => g.First()));
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<IReadOnlyList<CutSample>> Extract(BackboneClient client, IEnumerable<SampleImages.Sample> images)
    {
        var samples = new List<CutSample>();
        foreach (var image in images)
        {
            var request = new ExtractRequest { Image = ByteString.CopyFrom(image.ReadBytes()) };
            request.CutPoints.Add(CutPoint);
            var reply = await client.ExtractAsync(request);
            samples.Add(new CutSample(image.Label, image.Length, reply.Features.ToArray(), reply.CutFeatures.Single()));
        }
        return samples;
    }
}

[CollectionDefinition(Name)]
public sealed class FashionCutsCollection : ICollectionFixture<FashionCuts>
{
    public const string Name = "fashion cut-point features";
}

/// <summary>Client-side helpers for fine-tuning Train calls: spec, then the tail pieces, then the rows.</summary>
public static class FineTuneCalls
{
    public static HeadSpec Spec(string name, HeadKind kind, string fingerprint, HeadDepth depth = HeadDepth.LastBlock, int epochs = 2)
        => new() { Name = name, Kind = kind, BackboneFingerprint = fingerprint, Depth = depth, Epochs = epochs, BatchSize = 8, Seed = 7 };

    public static async Task<List<TrainProgress>> TrainAsync(this V1.Heads.HeadsClient client, HeadSpec spec, IEnumerable<TailGraphChunk> tail, IReadOnlyList<FeatureRow> rows)
    {
        using var call = client.Train();
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = spec });
            foreach (var piece in tail)
            {
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Tail = piece });
            }
            foreach (var chunk in rows.Chunk(16))
            {
                var batch = new FeatureRows();
                batch.Rows.AddRange(chunk);
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = batch });
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // The server refused the call while rows were still being sent; its status comes with the response stream.
        }
        return await call.ResponseStream.ReadAllAsync().ToListAsync();
    }
}

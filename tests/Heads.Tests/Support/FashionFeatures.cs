using Google.Protobuf;
using Graft.Backbone;
using Graft.Testing;
using Graft.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using BackboneClient = Graft.V1.Backbone.BackboneClient;

namespace Graft.Heads.Tests.Support;

/// <summary>One committed sample image with its class, its synthetic length and its real ResNet18 feature vector.</summary>
public sealed record Sample(string Path, string Label, double Length, float[] Features)
{
    public FeatureRow ClassRow()
    {
        var row = new FeatureRow { Label = Label };
        row.Features.AddRange(Features);
        return row;
    }

    public FeatureRow LengthRow()
    {
        var row = new FeatureRow { Value = Length };
        row.Features.AddRange(Features);
        return row;
    }
}

/// <summary>
/// Real features of the committed Fashion-MNIST samples (samples/fashion/{train,test}), extracted once per test run
/// by the real BackboneService (embedded ResNet18 through ONNX Runtime) hosted in-process.
/// </summary>
public sealed class FashionFeatures : IAsyncLifetime
{
    public string Fingerprint { get; private set; } = "";

    public int Dimension { get; private set; }

    public IReadOnlyList<Sample> Train { get; private set; } = [];

    public IReadOnlyList<Sample> Test { get; private set; } = [];

    public async Task InitializeAsync()
    {
        await using var backbone = new InProcessBackbone();
        var client = backbone.Client;
        var info = await client.DescribeAsync(new DescribeBackboneRequest());
        Fingerprint = info.Fingerprint;
        Dimension = info.FeatureDimension;
        Train = await ExtractAll(client, "train");
        Test = await ExtractAll(client, "test");
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<IReadOnlyList<Sample>> ExtractAll(BackboneClient client, string split)
    {
        // A few calls in flight let the backbone's dynamic batcher fill batches.
        using var gate = new SemaphoreSlim(8);
        var samples = await Task.WhenAll(SampleImages.Load(split).Select(async image =>
        {
            await gate.WaitAsync();
            try
            {
                var reply = await client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(await File.ReadAllBytesAsync(image.Path)) });
                if (reply.Fingerprint != Fingerprint || reply.Features.Count != Dimension)
                {
                    throw new InvalidOperationException($"Backbone answered {image.Path} with fingerprint {reply.Fingerprint} and {reply.Features.Count} features.");
                }
                return new Sample(image.Path, image.Label, image.Length, reply.Features.ToArray());
            }
            finally
            {
                gate.Release();
            }
        }));
        return samples;
    }
}

[CollectionDefinition(Name)]
public sealed class FashionCollection : ICollectionFixture<FashionFeatures>
{
    public const string Name = "fashion features";
}

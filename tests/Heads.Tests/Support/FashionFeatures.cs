using System.Globalization;
using Google.Protobuf;
using Graft.Backbone;
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
        var root = FindSamples();
        await using var factory = new WebApplicationFactory<BackboneOptions>().WithWebHostBuilder(b =>
        {
            b.UseSetting("Graft:Backbone:Device", "cpu");
            b.UseSetting("Logging:LogLevel:Default", "Warning");
        });
        using var channel = GrpcChannel.ForAddress(factory.Server.BaseAddress, new GrpcChannelOptions { HttpHandler = factory.Server.CreateHandler() });
        var client = new BackboneClient(channel);
        var info = await client.DescribeAsync(new DescribeBackboneRequest());
        Fingerprint = info.Fingerprint;
        Dimension = info.FeatureDimension;
        Train = await ExtractAll(client, Path.Combine(root, "train"));
        Test = await ExtractAll(client, Path.Combine(root, "test"));
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<IReadOnlyList<Sample>> ExtractAll(BackboneClient client, string folder)
    {
        var lines = (await File.ReadAllLinesAsync(Path.Combine(folder, "lengths.csv"))).Skip(1).Where(l => l.Length > 0).ToList();
        // A few calls in flight let the backbone's dynamic batcher fill batches.
        using var gate = new SemaphoreSlim(8);
        var samples = await Task.WhenAll(lines.Select(async line =>
        {
            var parts = line.Split(',');
            var relative = parts[0];
            await gate.WaitAsync();
            try
            {
                var reply = await client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(await File.ReadAllBytesAsync(Path.Combine(folder, relative))) });
                if (reply.Fingerprint != Fingerprint || reply.Features.Count != Dimension)
                {
                    throw new InvalidOperationException($"Backbone answered {relative} with fingerprint {reply.Fingerprint} and {reply.Features.Count} features.");
                }
                return new Sample(relative, relative.Split('/')[0], double.Parse(parts[1], CultureInfo.InvariantCulture), reply.Features.ToArray());
            }
            finally
            {
                gate.Release();
            }
        }));
        return samples;
    }

    private static string FindSamples()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "samples", "fashion");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException("samples/fashion not found above " + AppContext.BaseDirectory);
    }
}

[CollectionDefinition(Name)]
public sealed class FashionCollection : ICollectionFixture<FashionFeatures>
{
    public const string Name = "fashion features";
}

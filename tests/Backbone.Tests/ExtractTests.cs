using Google.Protobuf;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;

namespace Graft.Backbone.Tests;

[Collection(BackboneCollection.Name)]
public sealed class ExtractTests(DefaultBackbone backbone)
{
    [Fact]
    public async Task Extract_of_a_sample_image_returns_512_finite_features_and_the_resnet18_fingerprint()
    {
        var image = await File.ReadAllBytesAsync(SampleImages.Load("test")[0].Path);

        var reply = await backbone.Client.ExtractAsync(new ExtractRequest { Image = ByteString.CopyFrom(image) });

        Assert.Equal(512, reply.Dimension);
        Assert.Equal(512, reply.Features.Count);
        Assert.All(reply.Features, f => Assert.True(float.IsFinite(f)));
        Assert.Contains(reply.Features, f => f != 0f);
        Assert.Matches("^resnet18:[0-9a-f]{16}$", reply.Fingerprint);
    }

    [Fact]
    public async Task Describe_reports_the_loaded_backbone_the_cpu_provider_and_the_batching_settings()
    {
        var info = await backbone.Client.DescribeAsync(new DescribeBackboneRequest());

        Assert.Equal("resnet18", info.Name);
        Assert.Equal([3L, 224, 224], info.InputShape);
        Assert.Equal(512, info.FeatureDimension);
        Assert.Equal("CPUExecutionProvider", info.ExecutionProvider);
        Assert.Equal(16, info.MaxBatchSize);
        Assert.Equal(2.0, info.MaxQueueDelayMs);
        Assert.Equal("Pooling395_Output_0", info.CutTensor);
        Assert.Contains("BGR", info.Preprocessing);
        Assert.Equal(256L * 1024 * 1024, info.CacheCapacityBytes);
    }
}

using Google.Protobuf;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Tests;

[Collection(StackCollection.Name)]
public sealed class HeadManagementTests(StackFixture fixture)
{
    [Fact]
    public async Task A_head_can_be_listed_rolled_back_to_its_first_version_and_deleted()
    {
        // Arrange: two versions of a small probe head (features come from the backbone cache the second time).
        await fixture.HeadsAsync();
        const string name = "rollback-probe";
        var examples = fixture.Train.Where(s => s.Label == "bag").Take(12).Concat(fixture.Train.Where(s => s.Label == "trouser").Take(12)).ToList();
        var spec = new HeadSpec { Name = name, Kind = HeadKind.Classifier, Epochs = 3, Seed = 1 };
        var first = (await fixture.TrainAsync(spec, examples.Select(StackFixture.Labelled)))[^1].Published;
        var second = (await fixture.TrainAsync(spec, examples.Select(StackFixture.Labelled)))[^1].Published;
        var image = ByteString.CopyFrom(examples[0].ReadBytes());

        // Act + Assert: listed with both versions, the newest active.
        var listed = (await fixture.Client.ListHeadsAsync(new ListHeadsRequest(), fixture.Stack.PredictHeaders)).Heads.Single(h => h.Name == name);
        Assert.Equal([first.Version, second.Version], listed.Versions.Select(v => v.Version));
        Assert.Equal(second.Version, listed.ActiveVersion);
        Assert.False(listed.Stale);

        // Roll back: the first version is active and answers Predict.
        var rolledBack = await fixture.Client.ActivateHeadAsync(new ActivateVersionRequest { Name = name, Version = first.Version }, fixture.Stack.AdminHeaders);
        Assert.Equal(first.Version, rolledBack.ActiveVersion);
        var answer = await PredictOnlyAsync(name, image);
        Assert.Equal(first.Version, answer.Version);

        // Delete: gone from the list, and naming it is NOT_FOUND.
        var deleted = await fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = name }, fixture.Stack.AdminHeaders);
        Assert.Equal([first.Version, second.Version], deleted.DeletedVersions.Order());
        var after = await fixture.Client.ListHeadsAsync(new ListHeadsRequest(), fixture.Stack.PredictHeaders);
        Assert.DoesNotContain(after.Heads, h => h.Name == name);
        Assert.Contains(after.Heads, h => h.Name == StackFixture.Classifier);
        var missing = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.GetHeadAsync(new GetHeadRequest { Name = name }, fixture.Stack.PredictHeaders).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task Describe_shows_the_backbone_and_every_head_as_current()
    {
        // Arrange
        await fixture.HeadsAsync();

        // Act
        var described = await fixture.Client.DescribeAsync(new DescribeRequest(), fixture.Stack.PredictHeaders);

        // Assert
        Assert.Equal(512, described.Backbone.FeatureDimension);
        var names = described.Heads.Select(h => h.Name).ToList();
        Assert.Contains(StackFixture.Regressor, names);
        Assert.Contains(StackFixture.Classifier, names);
        Assert.All(described.Heads, h => Assert.False(h.Stale));
        Assert.All(described.Heads.Where(h => h.Name is StackFixture.Regressor or StackFixture.Classifier),
            h => Assert.Equal(described.Backbone.Fingerprint, h.Versions.Single(v => v.Version == h.ActiveVersion).BackboneFingerprint));
    }

    private async Task<HeadOutput> PredictOnlyAsync(string head, ByteString image)
    {
        var reply = await fixture.Client.PredictAsync(new PredictRequest { Image = image, Heads = { head } }, fixture.Stack.PredictHeaders);
        return Assert.Single(reply.Results);
    }
}

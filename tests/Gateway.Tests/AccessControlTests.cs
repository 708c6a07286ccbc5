using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Tests;

[Collection(StackCollection.Name)]
public sealed class AccessControlTests(StackFixture fixture)
{
    [Fact]
    public async Task Admin_calls_without_the_admin_token_are_unauthenticated_and_change_nothing()
    {
        // Arrange
        await fixture.HeadsAsync();
        var wrong = ServiceStack.Bearer("not-the-token");
        var predictOnly = fixture.Stack.PredictHeaders;

        // Act
        var trainWithout = await Assert.ThrowsAsync<RpcException>(() => fixture.TrainAsync(
            new HeadSpec { Name = "intruder", Kind = HeadKind.Regressor }, fixture.Train.Take(2).Select(StackFixture.Measured), headers: []));
        var deleteWrong = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.DeleteHeadAsync(
            new DeleteHeadRequest { Name = StackFixture.Classifier }, wrong).ResponseAsync);
        var deleteWithPredictToken = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.DeleteHeadAsync(
            new DeleteHeadRequest { Name = StackFixture.Classifier }, predictOnly).ResponseAsync);
        var activateWithout = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.ActivateHeadAsync(
            new ActivateVersionRequest { Name = StackFixture.Classifier, Version = 1 }).ResponseAsync);

        // Assert
        Assert.All([trainWithout, deleteWrong, deleteWithPredictToken, activateWithout], e => Assert.Equal(StatusCode.Unauthenticated, e.StatusCode));
        var heads = await fixture.Client.ListHeadsAsync(new ListHeadsRequest(), fixture.Stack.PredictHeaders);
        Assert.Contains(heads.Heads, h => h.Name == StackFixture.Classifier);
        Assert.DoesNotContain(heads.Heads, h => h.Name == "intruder");
    }

    [Fact]
    public async Task Predict_needs_the_configured_predict_token_and_tokens_never_reach_the_log()
    {
        // Arrange
        var image = ByteString.CopyFrom(fixture.Test[1].ReadBytes());

        // Act
        var without = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.PredictAsync(new PredictRequest { Image = image }).ResponseAsync);
        var wrong = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.PredictAsync(
            new PredictRequest { Image = image }, ServiceStack.Bearer("guess")).ResponseAsync);
        var withPredict = await fixture.Client.PredictAsync(new PredictRequest { Image = image }, fixture.Stack.PredictHeaders);
        var withAdmin = await fixture.Client.PredictAsync(new PredictRequest { Image = image }, fixture.Stack.AdminHeaders);

        // Assert
        Assert.Equal(StatusCode.Unauthenticated, without.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        Assert.Equal(withPredict.BackboneFingerprint, withAdmin.BackboneFingerprint);
        var log = string.Join('\n', fixture.Stack.Gateway.Output);
        Assert.Contains("Rejected /graft.v1.Gateway/Predict", log);
        Assert.DoesNotContain(fixture.Stack.Options.AdminToken!, log);
        Assert.DoesNotContain(fixture.Stack.Options.PredictToken!, log);
        Assert.DoesNotContain("guess", log);
    }
}

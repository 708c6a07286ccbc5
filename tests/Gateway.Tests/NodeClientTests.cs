using System.Diagnostics;
using System.Text.Json;
using Graft.Testing;

namespace Graft.Gateway.Tests;

/// <summary>The contract works outside .NET: a Node.js script loads protos/gateway.proto and calls Predict.</summary>
[Collection(StackCollection.Name)]
public sealed class NodeClientTests(StackFixture fixture)
{
    private static readonly string ClientFolder = Path.Combine(RepositoryLayout.Root, "tests", "node-client");

    [Fact]
    public async Task A_nodejs_client_loading_gateway_proto_gets_both_heads_answers()
    {
        // Arrange
        await fixture.HeadsAsync();
        await EnsureNodeModulesAsync();
        var image = fixture.Test.First(s => s.Label == "trouser");
        var expected = await fixture.Client.PredictAsync(new V1.PredictRequest
        {
            Image = Google.Protobuf.ByteString.CopyFrom(image.ReadBytes()),
            Heads = { StackFixture.Regressor, StackFixture.Classifier },
        }, fixture.Stack.PredictHeaders);

        // Act
        var (exit, stdout, stderr) = await RunAsync(RequiredTool.Node, "predict.js",
            "--address", $"127.0.0.1:{fixture.Stack.Gateway.GrpcPort}",
            "--image", image.Path,
            "--head", StackFixture.Regressor, "--head", StackFixture.Classifier,
            "--token", fixture.Stack.Options.PredictToken!);

        // Assert
        Assert.True(exit == 0, $"node exited {exit}\nstdout: {stdout}\nstderr: {stderr}");
        using var reply = JsonDocument.Parse(stdout);
        var root = reply.RootElement;
        Assert.Equal(expected.BackboneFingerprint, root.GetProperty("backboneFingerprint").GetString());
        var results = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal([StackFixture.Regressor, StackFixture.Classifier], results.Select(r => r.GetProperty("head").GetString()));
        Assert.Equal("HEAD_KIND_REGRESSOR", results[0].GetProperty("kind").GetString());
        Assert.Equal(expected.Results[0].Value, results[0].GetProperty("value").GetDouble(), 6);
        Assert.Equal(expected.Results[1].Top[0].Label, results[1].GetProperty("top")[0].GetProperty("label").GetString());
    }

    [Fact]
    public async Task A_nodejs_client_without_the_token_gets_unauthenticated()
    {
        // Arrange
        await EnsureNodeModulesAsync();

        // Act
        var (exit, stdout, _) = await RunAsync(RequiredTool.Node, "predict.js",
            "--address", $"127.0.0.1:{fixture.Stack.Gateway.GrpcPort}", "--image", fixture.Test[0].Path);

        // Assert
        Assert.Equal(2, exit);
        using var reply = JsonDocument.Parse(stdout);
        Assert.Equal(16, reply.RootElement.GetProperty("error").GetProperty("code").GetInt32()); // UNAUTHENTICATED
    }

    private static async Task EnsureNodeModulesAsync()
    {
        if (Directory.Exists(Path.Combine(ClientFolder, "node_modules", "@grpc", "grpc-js")))
        {
            return;
        }
        var (exit, stdout, stderr) = await RunAsync(RequiredTool.Npm, "ci", "--no-audit", "--no-fund");
        Assert.True(exit == 0, $"npm ci failed ({exit})\n{stdout}\n{stderr}");
    }

    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(RequiredTool tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool.Require()) { WorkingDirectory = ClientFolder, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}

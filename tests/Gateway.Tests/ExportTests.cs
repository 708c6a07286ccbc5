using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Google.Protobuf;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace Graft.Gateway.Tests;

/// <summary>ExportHead end to end: the exported file, run by a plain ONNX Runtime session, answers as Graft does.</summary>
[Collection(StackCollection.Name)]
public sealed class ExportTests(StackFixture fixture, ITestOutputHelper output)
{
    private const double RelativeTolerance = 1e-4;

    private double _maxAbsolute, _maxRelative;

    /// <summary>Two held-out images per class: the same real images go through Graft and through the file.</summary>
    private IReadOnlyList<SampleImages.Sample> Images => fixture.Test.GroupBy(s => s.Label).SelectMany(g => g.Take(2)).ToList();

    public static TheoryData<string, ExportInput> Heads => new()
    {
        { StackFixture.Classifier, ExportInput.Pixels },
        { StackFixture.Classifier, ExportInput.Tensor },
        { StackFixture.Regressor, ExportInput.Pixels },
        { StackFixture.Regressor, ExportInput.Tensor },
    };

    [Theory]
    [MemberData(nameof(Heads))]
    public async Task An_exported_head_run_by_plain_onnx_runtime_answers_as_graft_predict_does(string head, ExportInput input)
    {
        // Arrange
        await fixture.HeadsAsync();

        // Act
        var (model, file) = await ExportCachedAsync(head, input);

        // Assert
        AssertAgreesWithPredict(head, model, file, input);
    }

    [Fact]
    public async Task A_linear_probe_exports_and_agrees_with_predict()
    {
        // Arrange: a classifier with no hidden layer, on features the backbone has cached.
        await fixture.HeadsAsync();
        const string name = "kind-probe";
        var published = (await fixture.TrainAsync(
            new HeadSpec { Name = name, Kind = HeadKind.Classifier, Hidden = new HiddenLayers(), Epochs = 20, Seed = 3 },
            fixture.Train.Select(StackFixture.Labelled)))[^1].Published;
        try
        {
            // Act
            var (model, file) = await ExportAsync(new ExportHeadRequest { Name = name, Version = published.Version });

            // Assert
            Assert.Equal(published.Version, model.Version);
            AssertAgreesWithPredict(name, model, file, ExportInput.Pixels);
        }
        finally
        {
            await fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = name }, fixture.Stack.AdminHeaders);
        }
    }

    [Fact]
    public async Task The_file_describes_itself_in_its_metadata_and_matches_the_announced_size_and_hash()
    {
        // Arrange
        await fixture.HeadsAsync();
        var described = await fixture.Client.DescribeAsync(new DescribeRequest(), fixture.Stack.PredictHeaders);
        var head = described.Heads.Single(h => h.Name == StackFixture.Classifier);
        var version = head.Versions.Single(v => v.Version == head.ActiveVersion);

        // Act (the file the classifier/pixels case above also checks)
        var (model, file) = await ExportCachedAsync(StackFixture.Classifier, ExportInput.Pixels);
        using var session = new InferenceSession(file);
        var metadata = session.ModelMetadata.CustomMetadataMap;

        // Assert
        Assert.Equal(model.SizeBytes, file.LongLength);
        Assert.Equal(model.Sha256, Convert.ToHexStringLower(SHA256.HashData(file)));
        Assert.Equal(StackFixture.Classifier, metadata["graft.head"]);
        Assert.Equal(version.Version.ToString(), metadata["graft.version"]);
        Assert.Equal(described.Backbone.Fingerprint, metadata["backbone_fingerprint"]);
        Assert.Equal(described.Backbone.Preprocessing, metadata["preprocessing"]);
        Assert.Equal(version.Labels, JsonSerializer.Deserialize<string[]>(metadata["labels"]));
        Assert.Equal(version.Metrics.Accuracy, JsonDocument.Parse(metadata["metrics"]).RootElement.GetProperty("accuracy").GetDouble(), 12);
        Assert.Equal(["pixels"], session.InputMetadata.Keys);
        Assert.Equal(typeof(byte), session.InputMetadata["pixels"].ElementType);
        Assert.Equal(["probabilities", "class_index"], session.OutputMetadata.Keys);
    }

    [Fact]
    public async Task Exporting_an_unknown_head_or_version_is_not_found_and_a_stale_head_is_a_failed_precondition()
    {
        // Arrange: a head trained on features from another backbone (straight through HeadService).
        await fixture.HeadsAsync();
        const string stale = "stale-probe";
        await StaleHeads.TrainAsync(fixture.Stack.HeadsClient, stale);
        try
        {
            // Act
            var unknown = await Assert.ThrowsAsync<RpcException>(() => ExportAsync(new ExportHeadRequest { Name = "no-such-head" }));
            var noVersion = await Assert.ThrowsAsync<RpcException>(() => ExportAsync(new ExportHeadRequest { Name = StackFixture.Classifier, Version = 99 }));
            var stale_ = await Assert.ThrowsAsync<RpcException>(() => ExportAsync(new ExportHeadRequest { Name = stale }));
            var anonymous = await Assert.ThrowsAsync<RpcException>(() => ExportAsync(new ExportHeadRequest { Name = StackFixture.Classifier }, fixture.Stack.PredictHeaders));

            // Assert
            Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
            Assert.Contains(StackFixture.Classifier, unknown.Status.Detail);
            Assert.Equal(StatusCode.NotFound, noVersion.StatusCode);
            Assert.Contains("no version 99", noVersion.Status.Detail);
            Assert.Equal(StatusCode.FailedPrecondition, stale_.StatusCode);
            Assert.Contains("stale", stale_.Status.Detail);
            Assert.Contains("Retrain", stale_.Status.Detail);
            Assert.Equal(StatusCode.Unauthenticated, anonymous.StatusCode);
        }
        finally
        {
            await fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = stale }, fixture.Stack.AdminHeaders);
        }
    }

    [Fact]
    public async Task A_nodejs_program_running_the_exported_file_with_onnxruntime_node_gets_graft_top_labels()
    {
        // Arrange: the exported classifier, and the held-out images as raw RGB of the input size.
        await fixture.HeadsAsync();
        await NodeClientTests.EnsureNodeModulesAsync();
        var (model, file) = await ExportCachedAsync(StackFixture.Classifier, ExportInput.Pixels);
        var folder = Directory.CreateTempSubdirectory("graft-export-node-").FullName;
        try
        {
            var modelPath = Path.Combine(folder, "kind.onnx");
            await File.WriteAllBytesAsync(modelPath, file);
            var preprocessor = Preprocessor.Create(ResNet18Profile(), 40_000_000);
            var images = Images;
            var args = new List<string> { "run-model.js", "--model", modelPath, "--size", "224x224" };
            for (var i = 0; i < images.Count; i++)
            {
                var path = Path.Combine(folder, $"{i}.rgb");
                await File.WriteAllBytesAsync(path, preprocessor.Pixels(images[i].ReadBytes()));
                args.AddRange(["--pixels", path]);
            }

            // Act
            var (exit, stdout, stderr) = await NodeClientTests.RunAsync(RequiredTool.Node, [.. args]);

            // Assert
            Assert.True(exit == 0, $"node exited {exit}\nstdout: {stdout}\nstderr: {stderr}");
            using var reply = JsonDocument.Parse(stdout);
            Assert.Equal(model.BackboneFingerprint, reply.RootElement.GetProperty("metadata").GetProperty("backbone_fingerprint").GetString());
            var outputs = reply.RootElement.GetProperty("outputs").EnumerateArray().ToList();
            for (var i = 0; i < images.Count; i++)
            {
                var expected = (await fixture.Client.PredictAsync(new PredictRequest { Image = ByteString.CopyFrom(images[i].ReadBytes()), Heads = { StackFixture.Classifier } },
                    fixture.Stack.PredictHeaders)).Results.Single().Top[0];
                Assert.Equal(expected.Label, outputs[i].GetProperty("label").GetString());
                AssertClose(expected.Probability, outputs[i].GetProperty("probabilities")[model.Labels.IndexOf(expected.Label)].GetDouble(), images[i].Path);
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Runs the file on <see cref="Images"/> and compares with Graft's Predict: classifier probabilities and
    /// regressor values within 1e-4 relative, and the same top label.</summary>
    private void AssertAgreesWithPredict(string head, ExportedModel model, byte[] file, ExportInput input)
    {
        var images = Images;
        var expected = images.Select(s => fixture.Client.Predict(new PredictRequest
        {
            Image = ByteString.CopyFrom(s.ReadBytes()), Heads = { head }, TopK = 1000,
        }, fixture.Stack.PredictHeaders).Results.Single()).ToList();

        // A plain ONNX Runtime session: nothing of Graft's but the file.
        using var session = new InferenceSession(file);
        var preprocessor = Preprocessor.Create(ResNet18Profile(), 40_000_000);
        var inputName = session.InputMetadata.Keys.Single();
        Assert.Equal(model.InputName, inputName);
        NamedOnnxValue feed = input == ExportInput.Tensor
            ? NamedOnnxValue.CreateFromTensor(inputName, new DenseTensor<float>(images.SelectMany(s => preprocessor.Preprocess(s.ReadBytes())).ToArray(), [images.Count, 3, 224, 224]))
            : NamedOnnxValue.CreateFromTensor(inputName, new DenseTensor<byte>(images.SelectMany(s => preprocessor.Pixels(s.ReadBytes())).ToArray(), [images.Count, 224, 224, 3]));
        using var results = session.Run([feed]);

        if (model.Kind == HeadKind.Classifier)
        {
            var probabilities = results.Single(r => r.Name == "probabilities").AsTensor<float>();
            var classIndex = results.Single(r => r.Name == "class_index").AsTensor<long>();
            for (var i = 0; i < images.Count; i++)
            {
                foreach (var score in expected[i].Top)
                {
                    var actual = probabilities[i, model.Labels.IndexOf(score.Label)];
                    AssertClose(score.Probability, actual, $"{images[i].Path} {score.Label}");
                }
                Assert.Equal(expected[i].Top[0].Label, model.Labels[(int)classIndex[i]]);
            }
        }
        else
        {
            var values = results.Single(r => r.Name == "value").AsTensor<float>();
            for (var i = 0; i < images.Count; i++)
            {
                AssertClose(expected[i].Value, values[i], images[i].Path);
            }
        }
        output.WriteLine($"{head} {input}: {images.Count} images, max |difference| {_maxAbsolute:G3}, max relative difference {_maxRelative:G3} (values >= 1e-3)");
    }

    private void AssertClose(double expected, double actual, string what)
    {
        var relative = Math.Abs(expected - actual) / Math.Max(Math.Abs(expected), 1e-30);
        _maxAbsolute = Math.Max(_maxAbsolute, Math.Abs(expected - actual));
        if (Math.Abs(expected) >= 1e-3) _maxRelative = Math.Max(_maxRelative, relative);
        // Relative to the value, with an absolute floor for probabilities near zero (1e-4 of the [0, 1] range).
        var tolerance = RelativeTolerance * Math.Max(Math.Abs(expected), 1.0);
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"{what}: Graft {expected:R}, exported model {actual:R} (tolerance {tolerance:G3})");
    }

    private static BackboneProfile ResNet18Profile()
        => BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory);

    // Each export moves ~62 MB; tests that look at the same file share one export.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, ExportInput), Task<(ExportedModel, byte[])>> Exported = new();

    private Task<(ExportedModel Model, byte[] File)> ExportCachedAsync(string head, ExportInput input)
        => Exported.GetOrAdd((head, input), key => ExportAsync(new ExportHeadRequest { Name = key.Item1, Input = key.Item2 }));

    private async Task<(ExportedModel Model, byte[] File)> ExportAsync(ExportHeadRequest request, Metadata? headers = null)
    {
        var started = Stopwatch.GetTimestamp();
        using var call = fixture.Client.ExportHead(request, headers ?? fixture.Stack.AdminHeaders, deadline: DateTime.UtcNow.AddMinutes(3));
        ExportedModel? model = null;
        using var file = new MemoryStream();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync())
        {
            model ??= chunk.Model;
            chunk.Data.WriteTo(file);
        }
        output.WriteLine($"export {request.Name} {request.Input}: {file.Length} bytes in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");
        return (model!, file.ToArray());
    }
}

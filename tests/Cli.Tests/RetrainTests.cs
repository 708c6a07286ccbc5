using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Cli.Tests;

/// <summary>Training sets kept with the heads, end to end: three real processes train through the Gateway, a second
/// stack serves the same registry and store on another backbone profile (resnet18-int8, its own fingerprint), and
/// `graft heads retrain --stale` brings the heads back.</summary>
[Collection(RetrainCollection.Name)]
public sealed class RetrainTests(ITestOutputHelper output)
{
    private static readonly string[] Classes = ["bag", "sneaker", "trouser"];

    [Fact]
    public async Task Training_sets_are_kept_once_per_image_refused_over_their_limit_retrained_on_a_new_backbone_and_released_on_delete()
    {
        var registry = Directory.CreateTempSubdirectory("graft-retrain-registry-").FullName;
        var store = Directory.CreateTempSubdirectory("graft-retrain-datasets-").FullName;
        var int8Cache = Directory.CreateTempSubdirectory("graft-retrain-int8-").FullName;
        var clock = Stopwatch.StartNew();
        try
        {
            var samples = SampleImages.Load("train", Classes).GroupBy(s => s.Label).SelectMany(g => g.Take(5)).ToList();
            var images = samples.Select(s => ByteString.CopyFrom(s.ReadBytes())).ToList();
            var distinctImages = images.Select(i => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(i.Span))).Distinct().Count();
            var setBytes = images.Sum(i => (long)i.Length);
            // One training set may hold these 15 images, not 30.
            var limit = new Dictionary<string, string>
            {
                ["Graft__Gateway__Datasets__MaxDatasetBytes"] = Math.Max(1024, setBytes + 1).ToString(CultureInfo.InvariantCulture),
            };

            string fp32;
            await using (var stack = await ServiceStack.StartAsync(new ServiceStackOptions
                         { RegistryDirectory = registry, DatasetsDirectory = store, GatewayEnvironment = limit }))
            {
                // Arrange: a classifier and a regressor on the same 15 images, and a head that opts out.
                var kind = await TrainAsync(stack, new HeadSpec { Name = "kind", Kind = HeadKind.Classifier, Epochs = 15, Seed = 3 },
                    samples.Select((s, i) => new LabelledImage { Image = images[i], Label = s.Label }));
                await TrainAsync(stack, new HeadSpec { Name = "length", Kind = HeadKind.Regressor, Epochs = 5 },
                    samples.Select((s, i) => new LabelledImage { Image = images[i], Value = s.Length }));
                await TrainAsync(stack, new HeadSpec { Name = "private", Kind = HeadKind.Regressor, Epochs = 2, KeepTrainingData = false },
                    samples.Select((s, i) => new LabelledImage { Image = images[i], Value = s.Length }));
                fp32 = kind.BackboneFingerprint;

                Assert.Equal(distinctImages, ImageFiles(store).Count);
                Assert.Equal(2, DatasetFiles(store).Count);
                var listed = await stack.GatewayClient.ListHeadsAsync(new ListHeadsRequest(), stack.AdminHeaders);
                var kindVersion = listed.Heads.Single(h => h.Name == "kind").Versions.Single();
                Assert.True(kindVersion.Retrainable);
                Assert.Equal(samples.Count, kindVersion.DatasetExamples);
                Assert.Equal(setBytes, kindVersion.DatasetBytes);
                Assert.False(listed.Heads.Single(h => h.Name == "private").Versions.Single().Retrainable);

                // Over the per-set limit: refused before training, nothing stored, no head.
                var before = ImageFiles(store).Count;
                var tooBig = await Assert.ThrowsAsync<RpcException>(() => TrainAsync(stack, new HeadSpec { Name = "too-big", Kind = HeadKind.Regressor, Epochs = 1 },
                    samples.Concat(SampleImages.Load("test", Classes)).Select(s => new LabelledImage { Image = ByteString.CopyFrom(s.ReadBytes()), Value = s.Length })));
                Assert.Equal(StatusCode.ResourceExhausted, tooBig.StatusCode);
                Assert.Contains("Graft:Gateway:Datasets:MaxDatasetBytes", tooBig.Status.Detail);
                Assert.Equal(before, ImageFiles(store).Count);
                Assert.Equal(2, DatasetFiles(store).Count);
                Assert.DoesNotContain((await stack.GatewayClient.ListHeadsAsync(new ListHeadsRequest(), stack.AdminHeaders)).Heads, h => h.Name == "too-big");
            }
            output.WriteLine($"first stack trained 3 heads: {clock.Elapsed.TotalSeconds:0.0} s");

            // What a crash between storing and publishing leaves: a set no version names, and an image only it used.
            var orphanSet = Path.Combine(store, "datasets", new string('0', 64) + ".json");
            var orphanImage = Path.Combine(store, "images", "ff", new string('f', 64));
            Directory.CreateDirectory(Path.GetDirectoryName(orphanImage)!);
            await File.WriteAllTextAsync(orphanSet, "{}");
            await File.WriteAllBytesAsync(orphanImage, [1, 2, 3]);
            File.SetLastWriteTimeUtc(orphanSet, DateTime.UtcNow.AddDays(-2));
            File.SetLastWriteTimeUtc(orphanImage, DateTime.UtcNow.AddDays(-2));

            // Act: the same registry and store behind an int8 backbone.
            await using (var stack = await ServiceStack.StartAsync(new ServiceStackOptions
                         {
                             RegistryDirectory = registry, DatasetsDirectory = store, GatewayEnvironment = limit,
                             BackboneEnvironment = new Dictionary<string, string>
                             {
                                 ["Graft__Backbone__Profile"] = "resnet18-int8",
                                 ["Graft__Backbone__CalibrationImages"] = "4",
                                 ["Graft__Backbone__QuantizedCacheDirectory"] = int8Cache,
                             },
                         }))
            {
                output.WriteLine($"int8 stack up: {clock.Elapsed.TotalSeconds:0.0} s");
                await Eventually.TrueAsync(() => !File.Exists(orphanSet) && !File.Exists(orphanImage), TimeSpan.FromSeconds(60),
                    "the start-up collection to remove the orphaned training set and its image");
                Assert.Equal(2, DatasetFiles(store).Count);
                Assert.Equal(distinctImages, ImageFiles(store).Count);
                var described = await stack.GatewayClient.DescribeAsync(new DescribeRequest(), stack.AdminHeaders);
                var int8 = described.Backbone.Fingerprint;
                Assert.StartsWith("resnet18-int8:", int8);
                Assert.NotEqual(fp32, int8);
                Assert.All(described.Heads, h => Assert.True(h.Stale, $"{h.Name} should be stale on {int8}"));

                var run = await GraftCli.RunAsync(Path.GetTempPath(),
                    "--gateway", stack.Gateway.GrpcAddress.ToString(), "--token", stack.Options.AdminToken!, "heads", "retrain", "--stale");
                output.WriteLine(run.ToString());
                output.WriteLine($"retrain --stale done: {clock.Elapsed.TotalSeconds:0.0} s");

                // Assert: two heads retrained, the opted-out one refused with the reason, exit code 1 for it.
                Assert.Equal(1, run.ExitCode);
                Assert.Contains("Retrained 2 of 3 stale head(s); 1 failed.", run.Stdout);
                Assert.Contains("'private' v1 is not retrainable", run.Stderr);
                Assert.Contains("keep_training_data off", run.Stderr);

                // The same refusal over HTTP (the transcoded POST /v1/heads/{name}:retrain).
                using (var http = new HttpClient { BaseAddress = stack.Gateway.HttpAddress })
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/heads/private:retrain") { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
                    request.Headers.Authorization = new("Bearer", stack.Options.AdminToken);
                    using var response = await http.SendAsync(request);
                    var body = await response.Content.ReadAsStringAsync();
                    Assert.True(response.StatusCode == System.Net.HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {body}");
                    Assert.Contains("not retrainable", body);
                }

                var kind = await stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = "kind" }, stack.AdminHeaders);
                Assert.False(kind.Stale);
                var v2 = Assert.Single(kind.Versions, v => v.Version == kind.ActiveVersion);
                Assert.Equal(2, v2.Version);
                Assert.Equal(int8, v2.BackboneFingerprint);
                Assert.True(v2.Retrainable);
                Assert.Equal(kind.Versions[0].Spec.Dataset, v2.Spec.Dataset);

                var test = SampleImages.Load("test", Classes);
                var correct = 0;
                foreach (var sample in test)
                {
                    var reply = await stack.GatewayClient.PredictAsync(
                        new PredictRequest { Image = ByteString.CopyFrom(sample.ReadBytes()), Heads = { "kind" } }, stack.PredictHeaders);
                    Assert.Equal(int8, reply.BackboneFingerprint);
                    Assert.Equal(2, reply.Results.Single().Version);
                    correct += reply.Results.Single().Top[0].Label == sample.Label ? 1 : 0;
                }
                output.WriteLine($"retrained classifier on int8: {correct}/{test.Count} test images right");
                Assert.True(correct * 2 > test.Count, $"the retrained head got {correct} of {test.Count} test images right");

                // Deleting one user of the shared images releases its set but keeps the images; the last user frees them.
                await stack.GatewayClient.DeleteHeadAsync(new DeleteHeadRequest { Name = "length" }, stack.AdminHeaders);
                Assert.Single(DatasetFiles(store));
                Assert.Equal(distinctImages, ImageFiles(store).Count);
                await stack.GatewayClient.DeleteHeadAsync(new DeleteHeadRequest { Name = "kind" }, stack.AdminHeaders);
                Assert.Empty(DatasetFiles(store));
                Assert.Empty(ImageFiles(store));
            }
            output.WriteLine($"total: {clock.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            foreach (var folder in new[] { registry, store, int8Cache })
            {
                try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
            }
        }
    }

    private static async Task<HeadVersionInfo> TrainAsync(ServiceStack stack, HeadSpec spec, IEnumerable<LabelledImage> examples)
    {
        using var call = stack.GatewayClient.TrainHead(stack.AdminHeaders, deadline: DateTime.UtcNow.AddMinutes(10));
        await call.RequestStream.WriteAsync(new TrainHeadRequest { Spec = spec });
        foreach (var example in examples)
        {
            await call.RequestStream.WriteAsync(new TrainHeadRequest { Example = example });
        }
        await call.RequestStream.CompleteAsync();
        HeadVersionInfo? published = null;
        await foreach (var step in call.ResponseStream.ReadAllAsync())
        {
            published = step.Published ?? published;
        }
        return published ?? throw new InvalidOperationException($"{spec.Name} was not published.");
    }

    private static List<string> ImageFiles(string store) => Files(Path.Combine(store, "images"));

    private static List<string> DatasetFiles(string store) => Files(Path.Combine(store, "datasets"));

    private static List<string> Files(string folder) =>
        Directory.Exists(folder) ? Directory.GetFiles(folder, "*", SearchOption.AllDirectories).ToList() : [];
}

/// <summary>The retraining test starts its own stacks: it runs alone, not beside the `graft up` collection.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RetrainCollection
{
    public const string Name = "retraining stacks";
}

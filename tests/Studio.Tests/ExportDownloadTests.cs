using System.Diagnostics;
using System.Net;
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

namespace Graft.Studio.Tests;

/// <summary><c>GET /v1/heads/{name}/export</c>: the file a browser or curl downloads is the ExportHead model, and it
/// answers as Graft does when a plain ONNX Runtime session runs it.</summary>
[Collection(StudioCollection.Name)]
public sealed class ExportDownloadTests(StudioFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task A_downloaded_head_run_by_plain_onnx_runtime_gives_graft_top_label_on_held_out_images()
    {
        // Arrange: the shared classifier, and one held-out image per class.
        var head = await fixture.SharedHeadAsync();
        var info = await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = head }, fixture.Stack.PredictHeaders);
        var images = fixture.Test.GroupBy(s => s.Label).Select(g => g.First()).ToList();
        using var client = fixture.Client(fixture.AdminToken);

        // Act
        var started = Stopwatch.GetTimestamp();
        using var response = await client.GetAsync($"/v1/heads/{head}/export?version={info.ActiveVersion}", HttpCompletionOption.ResponseHeadersRead);
        var file = await response.Content.ReadAsByteArrayAsync();
        output.WriteLine($"downloaded {file.Length} bytes in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");

        // Assert: a download named after the head and version, with the announced length and digest...
        Assert.True(response.StatusCode == HttpStatusCode.OK, System.Text.Encoding.UTF8.GetString(file.AsSpan(0, Math.Min(file.Length, 2000))));
        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("attachment", response.Content.Headers.ContentDisposition?.DispositionType);
        Assert.Equal($"{head}-v{info.ActiveVersion}.onnx", response.Content.Headers.ContentDisposition?.FileName?.Trim('"'));
        Assert.Equal(file.LongLength, response.Content.Headers.ContentLength);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(file)), response.Headers.GetValues("X-Graft-Sha256").Single());

        // ...that a plain ONNX Runtime session runs to the same answers as the Gateway's Predict.
        using var session = new InferenceSession(file);
        Assert.Equal(head, session.ModelMetadata.CustomMetadataMap["graft.head"]);
        var labels = JsonSerializer.Deserialize<string[]>(session.ModelMetadata.CustomMetadataMap["labels"])!;
        var preprocessor = Preprocessor.Create(BackboneProfiles.Resolve(new Graft.Backbone.BackboneOptions(), AppContext.BaseDirectory), 40_000_000);
        var pixels = NamedOnnxValue.CreateFromTensor("pixels",
            new DenseTensor<byte>(images.SelectMany(s => preprocessor.Pixels(s.ReadBytes())).ToArray(), [images.Count, 224, 224, 3]));
        using var results = session.Run([pixels]);
        var probabilities = results.Single(r => r.Name == "probabilities").AsTensor<float>();
        var classIndex = results.Single(r => r.Name == "class_index").AsTensor<long>();
        for (var i = 0; i < images.Count; i++)
        {
            var graft = (await fixture.Stack.GatewayClient.PredictAsync(
                new PredictRequest { Image = ByteString.CopyFrom(images[i].ReadBytes()), Heads = { head }, TopK = 1 }, fixture.Stack.PredictHeaders)).Results.Single().Top[0];
            Assert.Equal(graft.Label, labels[(int)classIndex[i]]);
            var exported = probabilities[i, Array.IndexOf(labels, graft.Label)];
            Assert.True(Math.Abs(graft.Probability - exported) <= 1e-4 * Math.Max(1, graft.Probability),
                $"{images[i].Path}: Graft {graft.Label} {graft.Probability:R}, the downloaded file {exported:R}");
        }
    }

    [Fact]
    public async Task A_download_needs_the_admin_token_and_an_unknown_head_or_version_is_404_and_a_stale_head_is_refused()
    {
        // Arrange: a head trained on features of another backbone (straight through HeadService).
        var head = await fixture.SharedHeadAsync();
        const string stale = "stale-download";
        await StaleHeads.TrainAsync(fixture.Stack.HeadsClient, stale);
        using var anonymous = fixture.Client();
        using var wrongToken = fixture.Client("not-the-admin-token");
        using var admin = fixture.Client(fixture.AdminToken);
        try
        {
            // Act
            using var noToken = await anonymous.GetAsync($"/v1/heads/{head}/export");
            using var wrong = await wrongToken.GetAsync($"/v1/heads/{head}/export");
            using var unknown = await admin.GetAsync("/v1/heads/no-such-head/export");
            using var noVersion = await admin.GetAsync($"/v1/heads/{head}/export?version=99");
            using var badInput = await admin.GetAsync($"/v1/heads/{head}/export?input=jpeg");
            using var staleHead = await admin.GetAsync($"/v1/heads/{stale}/export");

            // Assert: the usual HTTP codes with the gRPC call's message, never a file.
            Assert.Equal(HttpStatusCode.Unauthorized, noToken.StatusCode);
            Assert.Equal("Bearer", noToken.Headers.WwwAuthenticate.Single().Scheme);
            Assert.Contains("admin token", await MessageAsync(noToken));
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
            Assert.Contains(head, await MessageAsync(unknown)); // the message lists the heads there are
            Assert.Equal(HttpStatusCode.NotFound, noVersion.StatusCode);
            Assert.Contains("no version 99", await MessageAsync(noVersion));
            Assert.Equal(HttpStatusCode.BadRequest, badInput.StatusCode);
            Assert.Contains("pixels", await MessageAsync(badInput));
            Assert.Equal(HttpStatusCode.BadRequest, staleHead.StatusCode); // FAILED_PRECONDITION, as every HTTP endpoint maps it
            var staleMessage = await MessageAsync(staleHead);
            Assert.Contains("stale", staleMessage);
            Assert.Contains("Retrain", staleMessage);
        }
        finally
        {
            await fixture.Stack.GatewayClient.DeleteHeadAsync(new DeleteHeadRequest { Name = stale }, fixture.Stack.AdminHeaders);
        }
    }

    private static async Task<string> MessageAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("message").GetString() ?? "";
    }
}

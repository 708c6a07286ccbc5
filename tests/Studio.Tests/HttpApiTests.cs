using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;

namespace Graft.Studio.Tests;

/// <summary>REST/JSON (transcoded and upload), training over HTTP, the Open Inference Protocol, the OpenAPI page and
/// the README's curl examples, against the three real services.</summary>
[Collection(StudioCollection.Name)]
public sealed partial class HttpApiTests(StudioFixture fixture)
{
    [Fact]
    public async Task Rest_errors_carry_the_grpc_message_under_the_usual_http_code_and_no_cors_header()
    {
        var grpcError = await Assert.ThrowsAsync<RpcException>(async () =>
            await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = "no-such-head" }, fixture.Stack.PredictHeaders));

        using var client = fixture.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/heads/no-such-head");
        request.Headers.Add("Origin", "https://elsewhere.example");
        using var notFound = await client.SendAsync(request);
        var body = JsonDocument.Parse(await notFound.Content.ReadAsStringAsync()).RootElement;

        Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);
        Assert.Equal((int)StatusCode.NotFound, body.GetProperty("code").GetInt32());
        Assert.Equal(grpcError.Status.Detail, body.GetProperty("message").GetString());
        Assert.False(notFound.Headers.Contains("Access-Control-Allow-Origin"), "CORS must be off unless Graft:Gateway:CorsOrigins is set");

        using var noToken = await client.PostAsync("/v1/heads/no-such-head/versions/1:activate", null);
        Assert.Equal(HttpStatusCode.Unauthorized, noToken.StatusCode);
        Assert.Contains("admin token", await noToken.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Predict_answers_base64_json_multipart_and_raw_uploads_alike_and_refuses_an_oversized_body_with_413()
    {
        var head = await fixture.SharedHeadAsync();
        var sample = fixture.Test.First(s => s.Label == "trouser");
        var bytes = sample.ReadBytes();
        using var client = fixture.Client();

        using var json = await client.PostAsync("/v1/predict", new StringContent(
            JsonSerializer.Serialize(new { image = Convert.ToBase64String(bytes), heads = new[] { head } }), Encoding.UTF8, "application/json"));
        using var multipart = await client.PostAsync($"/v1/predict/upload?heads={head}", new MultipartFormDataContent { { new ByteArrayContent(bytes), "image", "t.png" } });
        var raw = new ByteArrayContent(bytes);
        raw.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        using var rawReply = await client.PostAsync($"/v1/predict/upload?heads={head}&top_k=1", raw);

        foreach (var reply in new[] { json, multipart, rawReply })
        {
            var text = await reply.Content.ReadAsStringAsync();
            Assert.True(reply.IsSuccessStatusCode, text);
            var result = JsonDocument.Parse(text).RootElement.GetProperty("results")[0];
            Assert.Equal(head, result.GetProperty("head").GetString());
            Assert.Equal("trouser", result.GetProperty("top")[0].GetProperty("label").GetString());
        }

        using var huge = await client.PostAsync("/v1/predict/upload", new ByteArrayContent(new byte[17 * 1024 * 1024]));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
        Assert.Contains("Graft:Limits:MaxMessageBytes", await huge.Content.ReadAsStringAsync());

        using var notAnImage = await client.PostAsync("/v1/predict/upload", new ByteArrayContent(Encoding.UTF8.GetBytes("hello")));
        Assert.Equal(HttpStatusCode.BadRequest, notAnImage.StatusCode);
    }

    [Fact]
    public async Task Training_over_http_streams_progress_publishes_versions_and_refuses_too_many_images_with_413()
    {
        var images = fixture.Train.Where((_, i) => i % 3 == 0).Select(s => ($"class:{s.Label}", s.Path)).ToList();

        var (status, lines) = await fixture.TrainOverHttpAsync("http-trained", images, epochs: 5);

        Assert.Equal(200, status);
        var phases = lines.Select(l => l.GetProperty("phase").GetString()).ToList();
        Assert.Equal("TRAIN_PHASE_EXTRACTING", phases[0]);
        Assert.Contains("TRAIN_PHASE_TRAINING", phases);
        Assert.Equal("TRAIN_PHASE_PUBLISHED", phases[^1]);
        var info = await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = "http-trained" }, fixture.Stack.PredictHeaders);
        Assert.Equal(lines[^1].GetProperty("published").GetProperty("version").GetInt32(), info.ActiveVersion);

        // A regressor from the same pictures (the backbone's cache makes their extraction free) with numeric targets.
        var lengths = fixture.Train.Where((_, i) => i % 3 == 0).Select(s => ($"value:{s.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)}", s.Path));
        var (regressorStatus, regressorLines) = await fixture.TrainOverHttpAsync("http-length", lengths, epochs: 5);
        Assert.True(regressorStatus == 200, string.Join('\n', regressorLines));
        Assert.Equal("HEAD_KIND_REGRESSOR", regressorLines[^1].GetProperty("published").GetProperty("kind").GetString());

        var (wrongToken, _) = await fixture.TrainOverHttpAsync("http-trained", images, epochs: 5, token: "not-the-token");
        Assert.Equal(401, wrongToken);

        var tooMany = Enumerable.Repeat(images[0], StudioFixture.MaxTrainExamples + 1).ToList();
        var (tooManyStatus, tooManyLines) = await fixture.TrainOverHttpAsync("too-many", tooMany, epochs: 1);
        Assert.Equal(413, tooManyStatus);
        Assert.Contains("MaxTrainExamples", tooManyLines[0].GetProperty("message").GetString());
    }

    [Fact]
    public async Task Open_inference_protocol_answers_a_request_shaped_like_the_specification_example()
    {
        var head = await fixture.SharedHeadAsync();
        var sample = fixture.Test.First(s => s.Label == "bag");
        using var client = fixture.Client();

        using var live = await client.GetAsync("/v2/health/live");
        using var ready = await client.GetAsync("/v2/health/ready");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        var metadata = JsonDocument.Parse(await client.GetStringAsync($"/v2/models/{head}")).RootElement;
        Assert.Equal(head, metadata.GetProperty("name").GetString());
        Assert.Equal("BYTES", metadata.GetProperty("inputs")[0].GetProperty("datatype").GetString());

        // The published example's shape (id, inputs with name/shape/datatype/data, outputs by name), with a BYTES input.
        var request = $$"""
            {
              "id" : "42",
              "inputs" : [
                {
                  "name" : "image",
                  "shape" : [ 1 ],
                  "datatype" : "BYTES",
                  "data" : [ "{{Convert.ToBase64String(sample.ReadBytes())}}" ]
                }
              ],
              "outputs" : [
                {
                  "name" : "label"
                },
                {
                  "name" : "probability"
                }
              ]
            }
            """;
        using var reply = await client.PostAsync($"/v2/models/{head}/infer", new StringContent(request, Encoding.UTF8, "application/json"));
        var text = await reply.Content.ReadAsStringAsync();
        Assert.True(reply.IsSuccessStatusCode, text);
        var body = JsonDocument.Parse(text).RootElement;

        Assert.Equal("42", body.GetProperty("id").GetString());
        Assert.Equal(head, body.GetProperty("model_name").GetString());
        var labels = body.GetProperty("outputs")[0];
        var probabilities = body.GetProperty("outputs")[1];
        Assert.Equal("label", labels.GetProperty("name").GetString());
        Assert.Equal([1, StudioFixture.Classes.Length], labels.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()));
        Assert.Equal("bag", labels.GetProperty("data")[0].GetString());
        Assert.Equal("FP64", probabilities.GetProperty("datatype").GetString());
        Assert.InRange(probabilities.GetProperty("data").EnumerateArray().Sum(p => p.GetDouble()), 0.999, 1.001);

        using var wrongType = await client.PostAsync($"/v2/models/{head}/infer", new StringContent(request.Replace("\"BYTES\"", "\"FP32\""), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);
        Assert.Contains("must be BYTES", JsonDocument.Parse(await wrongType.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task The_openapi_document_and_its_page_are_served_locally()
    {
        using var client = fixture.Client();
        var document = await client.GetStringAsync("/openapi/v1.json");
        Assert.Contains("/v1/heads/{name}", document);
        Assert.Contains("/v1/predict/upload", document);
        Assert.Contains("/v2/models/{head}/infer", document);
        var page = await client.GetStringAsync("/openapi/index.html");
        Assert.DoesNotContain("https://", page.Replace("https://swagger.io", "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_readme_curl_examples_run_as_written()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(RepositoryLayout.Root, "README.md"));
        var section = CurlSection().Match(readme);
        Assert.True(section.Success, "README.md has no <!-- curl-examples --> ... <!-- /curl-examples --> section");
        var script = string.Join("\n", CodeBlock().Matches(section.Groups[1].Value).Select(m => m.Groups[1].Value));

        var psi = new ProcessStartInfo("bash") { WorkingDirectory = RepositoryLayout.Root, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-euo");
        psi.ArgumentList.Add("pipefail");
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        psi.Environment["GRAFT_HTTP"] = fixture.Http.GetLeftPart(UriPartial.Authority);
        psi.Environment["GRAFT_TOKEN"] = fixture.AdminToken;
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));

        Assert.True(process.ExitCode == 0, $"the README's curl examples failed (exit {process.ExitCode}):\n{await error}\n{await output}");
        var text = await output;
        Assert.Contains("TRAIN_PHASE_PUBLISHED", text);
        Assert.Contains("\"model_name\":\"shoes\"", text);
        Assert.Contains("\"deletedVersions\"", text);
    }

    [GeneratedRegex(@"<!-- curl-examples -->(.*?)<!-- /curl-examples -->", RegexOptions.Singleline)]
    private static partial Regex CurlSection();

    [GeneratedRegex(@"```sh\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CodeBlock();
}

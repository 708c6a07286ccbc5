using Graft.Gateway.Auth;
using Graft.Gateway.Flows;
using System.Text.Json;
using System.Text.Json.Serialization;
using Google.Protobuf;
using Graft.Gateway.Services;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Http;

/// <summary>The Open Inference Protocol (KServe v2) REST API over the heads: every head is a model whose one input is
/// <c>image</c> (BYTES, each element an encoded image as a base64 string) and whose outputs are <c>label</c> (BYTES) and
/// <c>probability</c> (FP64), all classes most probable first, for a classifier, or <c>value</c> (FP64) for a regressor.
/// Each image is one Predict through the same flow as the gRPC and REST APIs. Errors are <c>{"error": "..."}</c> with
/// the HTTP status the gRPC status maps to.</summary>
public static class OpenInferenceEndpoints
{
    public const string InputName = "image";

    public static void MapOpenInference(this IEndpointRouteBuilder app)
    {
        var v2 = app.MapGroup("/v2").WithTags("Open Inference Protocol (KServe v2)");
        v2.MapGet("/", () => Results.Json(new ServerMetadata("graft", typeof(OpenInferenceEndpoints).Assembly.GetName().Version?.ToString(3) ?? "0", []),
            HttpJsonContext.Default.ServerMetadata));
        v2.MapGet("/health/live", () => Results.Json(new LiveResponse(true), HttpJsonContext.Default.LiveResponse));
        v2.MapGet("/health/ready", ServerReadyAsync);
        v2.MapGet("/models/{head}", (HttpContext http, string head, GatewayService api, BearerTokenInterceptor access, ILoggerFactory loggers)
            => MetadataAsync(http, head, null, api, access, loggers));
        v2.MapGet("/models/{head}/versions/{version}", MetadataAsync);
        v2.MapGet("/models/{head}/ready", (HttpContext http, string head, GatewayService api, BearerTokenInterceptor access, ILoggerFactory loggers)
            => ModelReadyAsync(http, head, null, api, access, loggers));
        v2.MapGet("/models/{head}/versions/{version}/ready", ModelReadyAsync);
        v2.MapPost("/models/{head}/infer", (HttpContext http, string head, GatewayService api, PredictionFlow predictor, BearerTokenInterceptor access, ILoggerFactory loggers)
            => InferAsync(http, head, null, api, predictor, access, loggers));
        v2.MapPost("/models/{head}/versions/{version}/infer", InferAsync);
    }

    /// <summary>Ready when the backbone answers Describe and HeadService answers ListHeads.</summary>
    private static async Task ServerReadyAsync(HttpContext http, GatewayService api, ILoggerFactory loggers)
    {
        try
        {
            await api.Describe(new DescribeRequest(), new HttpCallContext(http, "/v2/health/ready"));
            await Results.Json(new ReadyResponse(true, null), HttpJsonContext.Default.ReadyResponse).ExecuteAsync(http);
        }
        catch (RpcException e)
        {
            await Results.Json(new ReadyResponse(false, e.Status.Detail), HttpJsonContext.Default.ReadyResponse, statusCode: StatusCodes.Status503ServiceUnavailable).ExecuteAsync(http);
        }
    }

    private static Task MetadataAsync(HttpContext http, string head, string? version, GatewayService api, BearerTokenInterceptor access, ILoggerFactory loggers)
        => Guard(http, loggers, async () =>
        {
            Authorize(http, access);
            var info = await GetAsync(http, head, version, api);
            var labels = ActiveLabels(info);
            var isClassifier = info.Versions.FirstOrDefault(v => v.Version == info.ActiveVersion)?.Kind == HeadKind.Classifier;
            TensorMetadata[] outputs = isClassifier
                ? [new("label", "BYTES", [-1, labels.Count]), new("probability", "FP64", [-1, labels.Count])]
                : [new("value", "FP64", [-1, 1])];
            await Results.Json(new ModelMetadata(info.Name, info.Versions.Select(v => v.Version.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
                "graft-torchsharp", [new(InputName, "BYTES", [-1])], outputs), HttpJsonContext.Default.ModelMetadata).ExecuteAsync(http);
        });

    private static Task ModelReadyAsync(HttpContext http, string head, string? version, GatewayService api, BearerTokenInterceptor access, ILoggerFactory loggers)
        => Guard(http, loggers, async () =>
        {
            Authorize(http, access);
            var info = await GetAsync(http, head, version, api);
            var ready = info.ActiveVersion > 0 && !info.Stale && (version is null || version == info.ActiveVersion.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await Results.Json(new ModelReady(info.Name, ready), HttpJsonContext.Default.ModelReady,
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable).ExecuteAsync(http);
        });

    private static Task InferAsync(HttpContext http, string head, string? version, GatewayService api, PredictionFlow predictor, BearerTokenInterceptor access, ILoggerFactory loggers)
        => Guard(http, loggers, async () =>
        {
            Authorize(http, access);
            InferenceRequest? request;
            try
            {
                request = await JsonSerializer.DeserializeAsync(http.Request.Body, HttpJsonContext.Default.InferenceRequest, http.RequestAborted);
            }
            catch (JsonException e)
            {
                throw Invalid($"the body is not an inference request in JSON ({e.Message}).");
            }
            var images = ReadImages(request ?? throw Invalid("the body is empty: send an inference request in JSON."));

            var info = await GetAsync(http, head, version, api);
            if (version is not null && version != info.ActiveVersion.ToString(System.Globalization.CultureInfo.InvariantCulture))
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    $"head '{head}' serves version {info.ActiveVersion}, not {version}; only the active version answers. Activate {version} first " +
                    $"(POST /v1/heads/{head}/versions/{version}:activate) or leave the version out of the path."));
            }
            var active = info.Versions.First(v => v.Version == info.ActiveVersion);
            var classes = Math.Max(1, active.Labels.Count);

            var answers = new List<HeadOutput>(images.Count);
            foreach (var image in images)
            {
                var reply = await predictor.PredictAsync(new PredictRequest { Image = image, Heads = { head }, TopK = classes }, http.RequestAborted);
                answers.Add(reply.Results[0]);
            }

            var n = answers.Count;
            var outputs = new List<ResponseOutput>();
            if (active.Kind == HeadKind.Classifier)
            {
                outputs.Add(new ResponseOutput("label", "BYTES", [n, classes], answers.SelectMany(a => a.Top.Select(t => (object)t.Label)).ToArray()));
                outputs.Add(new ResponseOutput("probability", "FP64", [n, classes], answers.SelectMany(a => a.Top.Select(t => (object)t.Probability)).ToArray()));
            }
            else
            {
                outputs.Add(new ResponseOutput("value", "FP64", [n, 1], answers.Select(a => (object)a.Value).ToArray()));
            }
            if (request.Outputs is { Length: > 0 } wanted)
            {
                var unknown = wanted.FirstOrDefault(w => outputs.All(o => o.Name != w.Name));
                if (unknown is not null)
                {
                    throw Invalid($"head '{head}' has no output '{unknown.Name}'; its outputs are {string.Join(", ", outputs.Select(o => o.Name))}.");
                }
                outputs = outputs.Where(o => wanted.Any(w => w.Name == o.Name)).ToList();
            }
            var servedVersion = answers.Count > 0 ? answers[0].Version : info.ActiveVersion;
            await Results.Json(new InferenceResponse(head, servedVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), request.Id, outputs.ToArray()),
                HttpJsonContext.Default.InferenceResponse).ExecuteAsync(http);
        });

    /// <summary>The one input, <c>image</c>: BYTES, shape [N] (or [N, 1]), data N base64 strings (flat or nested).</summary>
    private static List<ByteString> ReadImages(InferenceRequest request)
    {
        if (request.Inputs is not { Length: > 0 })
        {
            throw Invalid($"the request has no inputs; send one input named '{InputName}' with datatype BYTES and the base64 of each image.");
        }
        var input = request.Inputs.FirstOrDefault(i => i.Name == InputName)
            ?? throw Invalid($"no input named '{InputName}' (got {string.Join(", ", request.Inputs.Select(i => $"'{i.Name}'"))}); the image goes in '{InputName}'.");
        if (input.Datatype != "BYTES")
        {
            throw Invalid($"input '{InputName}' has datatype {input.Datatype}; it must be BYTES (the encoded image, base64).");
        }
        var strings = new List<string>();
        Flatten(input.Data, strings);
        if (strings.Count == 0)
        {
            throw Invalid($"input '{InputName}' has no data: put the base64 of each image in 'data'.");
        }
        var expected = input.Shape is { Length: > 0 } shape ? shape.Aggregate(1L, (a, b) => a * b) : strings.Count;
        if (expected != strings.Count)
        {
            throw Invalid($"input '{InputName}' has shape [{string.Join(", ", input.Shape!)}] but {strings.Count} elements in 'data'.");
        }
        var images = new List<ByteString>(strings.Count);
        for (var i = 0; i < strings.Count; i++)
        {
            try
            {
                images.Add(ByteString.FromBase64(strings[i]));
            }
            catch (FormatException)
            {
                throw Invalid($"element {i} of input '{InputName}' is not base64: encode each image file as base64 (e.g. `base64 -w0 cat.jpg`).");
            }
        }
        return images;
    }

    private static void Flatten(JsonElement data, List<string> into)
    {
        switch (data.ValueKind)
        {
            case JsonValueKind.Array:
                foreach (var item in data.EnumerateArray())
                {
                    Flatten(item, into);
                }
                break;
            case JsonValueKind.String:
                into.Add(data.GetString()!);
                break;
            case JsonValueKind.Undefined or JsonValueKind.Null:
                break;
            default:
                throw Invalid($"input '{InputName}' holds a {data.ValueKind}; BYTES elements are strings (the base64 of each image).");
        }
    }

    private static async Task<HeadInfo> GetAsync(HttpContext http, string head, string? version, GatewayService api)
    {
        var info = await api.GetHead(new GetHeadRequest { Name = head }, new HttpCallContext(http, "/v2/models/{head}"));
        if (version is not null && !info.Versions.Any(v => v.Version.ToString(System.Globalization.CultureInfo.InvariantCulture) == version))
        {
            throw new RpcException(new Status(StatusCode.NotFound,
                $"head '{head}' has no version {version}; its versions are {string.Join(", ", info.Versions.Select(v => v.Version))}."));
        }
        if (info.ActiveVersion == 0)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"head '{head}' has no version that can serve; train it again."));
        }
        return info;
    }

    private static IReadOnlyList<string> ActiveLabels(HeadInfo info) =>
        info.Versions.FirstOrDefault(v => v.Version == info.ActiveVersion)?.Labels ?? (IReadOnlyList<string>)[];

    private static void Authorize(HttpContext http, BearerTokenInterceptor access) =>
        access.Authorize("the Open Inference Protocol API (/v2/models)", admin: false, http.Request.Headers.Authorization, http.Connection.RemoteIpAddress?.ToString() ?? "");

    private static Task Guard(HttpContext http, ILoggerFactory loggers, Func<Task> endpoint) =>
        HttpErrors.GuardAsync(http, loggers.CreateLogger(typeof(OpenInferenceEndpoints)), endpoint, WriteErrorAsync);

    /// <summary>The protocol's error object: <c>{"error": "..."}</c>.</summary>
    private static async Task WriteErrorAsync(HttpContext http, RpcException error)
    {
        if (http.Response.HasStarted)
        {
            return;
        }
        var status = error.Trailers.GetValue("x-graft-http-status") is { } forced ? int.Parse(forced, System.Globalization.CultureInfo.InvariantCulture) : HttpErrors.HttpStatus(error.StatusCode);
        await Results.Json(new OipError(error.Status.Detail), HttpJsonContext.Default.OipError, statusCode: status).ExecuteAsync(http);
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}

public sealed record ServerMetadata(string Name, string Version, string[] Extensions);

public sealed record LiveResponse(bool Live);

public sealed record ReadyResponse(bool Ready, [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error);

public sealed record ModelReady(string Name, bool Ready);

public sealed record TensorMetadata(string Name, string Datatype, long[] Shape);

public sealed record ModelMetadata(string Name, string[] Versions, string Platform, TensorMetadata[] Inputs, TensorMetadata[] Outputs);

public sealed record RequestInput(string Name, long[]? Shape, string Datatype, JsonElement Data);

public sealed record RequestOutput(string Name);

public sealed record InferenceRequest(string? Id, RequestInput[]? Inputs, RequestOutput[]? Outputs);

public sealed record ResponseOutput(string Name, string Datatype, long[] Shape, object[] Data);

public sealed record InferenceResponse(
    [property: JsonPropertyName("model_name")] string ModelName,
    [property: JsonPropertyName("model_version")] string ModelVersion,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    ResponseOutput[] Outputs);

public sealed record OipError(string Error);

/// <summary>System.Text.Json metadata for the HTTP endpoints' own JSON (protobuf messages use <see cref="ProtoJson"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(ErrorLine))]
[JsonSerializable(typeof(ServerMetadata))]
[JsonSerializable(typeof(LiveResponse))]
[JsonSerializable(typeof(ReadyResponse))]
[JsonSerializable(typeof(ModelReady))]
[JsonSerializable(typeof(ModelMetadata))]
[JsonSerializable(typeof(InferenceRequest))]
[JsonSerializable(typeof(InferenceResponse))]
[JsonSerializable(typeof(OipError))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(double))]
public sealed partial class HttpJsonContext : JsonSerializerContext;

using Graft.Gateway.Auth;
using Graft.Gateway.Flows;
using Google.Protobuf;
using Graft.Gateway.Services;
using Graft.ServiceDefaults;
using Graft.V1;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Http;

/// <summary><c>POST /v1/predict/upload</c>: Predict for clients that have a file rather than base64 JSON
/// (<c>curl -F image=@cat.jpg</c>, or the raw image as the body). Same flow, limits, token and reply as
/// <c>POST /v1/predict</c>.</summary>
public static class UploadPredictEndpoint
{
    public const string Route = "/v1/predict/upload";

    public static async Task HandleAsync(HttpContext http, PredictionFlow predictor, BearerTokenInterceptor access,
        IOptions<LimitOptions> limits, ILoggerFactory loggers)
    {
        await HttpErrors.GuardAsync(http, loggers.CreateLogger(typeof(UploadPredictEndpoint)), async () =>
        {
            access.Authorize("POST " + Route, admin: false, http.Request.Headers.Authorization, http.Connection.RemoteIpAddress?.ToString() ?? "");
            var request = await ReadAsync(http, limits.Value.MaxMessageBytes);
            var reply = await predictor.PredictAsync(request, http.RequestAborted);
            await ProtoJson.WriteAsync(http, reply);
        });
    }

    private static async Task<PredictRequest> ReadAsync(HttpContext http, int maxBytes)
    {
        // The same ceiling as a gRPC Predict message (Graft:Limits:MaxMessageBytes).
        if (http.Request.ContentLength > maxBytes)
        {
            throw HttpErrors.TooLarge($"the image is {http.Request.ContentLength} bytes; the gateway accepts at most {maxBytes} (Graft:Limits:MaxMessageBytes).");
        }
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = maxBytes + 64 * 1024L; // room for the multipart framing
        }

        var request = new PredictRequest();
        var query = http.Request.Query;
        AddHeads(request, query["heads"]);
        var topK = query["top_k"].FirstOrDefault();

        if (http.Request.HasFormContentType)
        {
            var form = await http.Request.ReadFormAsync(new FormOptions { MultipartBodyLengthLimit = maxBytes + 64 * 1024L }, http.RequestAborted);
            var files = form.Files.GetFiles("image");
            if (files.Count != 1)
            {
                throw Invalid(files.Count == 0
                    ? "the form has no 'image' file field: send the picture as -F image=@photo.jpg."
                    : $"the form has {files.Count} 'image' files; send one image per request (PredictStream takes many).");
            }
            if (files[0].Length > maxBytes)
            {
                throw HttpErrors.TooLarge($"the image is {files[0].Length} bytes; the gateway accepts at most {maxBytes} (Graft:Limits:MaxMessageBytes).");
            }
            await using (var stream = files[0].OpenReadStream())
            {
                request.Image = await ByteString.FromStreamAsync(stream, http.RequestAborted);
            }
            AddHeads(request, form["heads"]);
            topK = form["top_k"].FirstOrDefault() ?? topK;
        }
        else
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
            request.Image = ByteString.CopyFrom(buffer.GetBuffer(), 0, (int)buffer.Length);
        }

        if (topK is not null)
        {
            request.TopK = int.TryParse(topK, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var k)
                ? k
                : throw Invalid($"top_k must be a whole number (got '{topK}').");
        }
        return request;
    }

    /// <summary>Heads come as repeated fields or comma-separated (<c>?heads=a,b</c>).</summary>
    private static void AddHeads(PredictRequest request, Microsoft.Extensions.Primitives.StringValues values)
    {
        foreach (var value in values)
        {
            request.Heads.AddRange((value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        }
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
}

/// <summary>Protobuf messages as JSON the way JSON transcoding writes them (proto3 JSON mapping, lowerCamelCase
/// names, enum names, default values included), so the upload, training and transcoded endpoints agree.</summary>
public static class ProtoJson
{
    public static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(false));

    public static async Task WriteAsync(HttpContext http, IMessage message)
    {
        http.Response.ContentType = "application/json; charset=utf-8";
        await http.Response.WriteAsync(Formatter.Format(message), http.RequestAborted);
    }
}

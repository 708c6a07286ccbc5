using System.Globalization;
using Graft.Gateway.Auth;
using Graft.Gateway.Flows;
using Graft.V1;
using Grpc.Core;

namespace Graft.Gateway.Http;

/// <summary><c>GET /v1/heads/{name}/export?version=N&amp;input=pixels|tensor</c>: ExportHead for browsers and
/// <c>curl</c> (server streaming does not transcode). Hands the request to the same <see cref="ExportFlow"/> as the gRPC
/// call, with the same admin token, and writes the file it streams as <c>application/octet-stream</c>, named
/// <c>&lt;head&gt;-v&lt;version&gt;.onnx</c>. Every check (unknown head or version, stale head) runs before the first
/// byte, so a failure is an ordinary HTTP error, never a truncated file.</summary>
public static class ExportEndpoint
{
    public const string Route = "/v1/heads/{name}/export";

    /// <summary>Response header with the lower-case hex SHA-256 of the file (as <c>ExportedModel.sha256</c>).</summary>
    public const string Sha256Header = "X-Graft-Sha256";

    public static async Task HandleAsync(HttpContext http, string name, ExportFlow exporter, BearerTokenInterceptor access, ILoggerFactory loggers)
    {
        await HttpErrors.GuardAsync(http, loggers.CreateLogger(typeof(ExportEndpoint)), async () =>
        {
            access.Authorize("GET " + Route, admin: true, http.Request.Headers.Authorization, http.Connection.RemoteIpAddress?.ToString() ?? "");
            var request = new ExportHeadRequest
            {
                Name = name,
                Version = ReadVersion(http.Request.Query["version"].FirstOrDefault()),
                Input = ReadInput(http.Request.Query["input"].FirstOrDefault()),
            };
            await exporter.ExportAsync(request, new OnnxFileWriter(http), http.RequestAborted);
        });
    }

    /// <summary>The file name a download gets: <c>&lt;head&gt;-v&lt;version&gt;.onnx</c>, with anything but letters,
    /// digits, dot, dash and underscore replaced (head names never have any; the header must stay plain ASCII).</summary>
    public static string FileName(string head, int version)
    {
        var safe = string.Concat(head.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_'));
        return $"{safe}-v{version.ToString(CultureInfo.InvariantCulture)}.onnx";
    }

    private static int ReadVersion(string? text) => text switch
    {
        null or "" => 0,
        _ when int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var version) => version,
        _ => throw Invalid($"version is '{text}'; use a version number (see GET /v1/heads/{{name}}), or leave it out for the version that serves now."),
    };

    private static ExportInput ReadInput(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "pixels" => ExportInput.Pixels,
        "tensor" or "image" => ExportInput.Tensor,
        _ => throw Invalid($"input is '{text}'; use pixels (raw RGB 0-255, preprocessing inside the model; the default) or tensor (float32, already preprocessed)."),
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    /// <summary>ExportFlow's stream as an HTTP download: the description becomes the headers (type, length, file
    /// name, SHA-256), each piece of the file goes straight to the body.</summary>
    private sealed class OnnxFileWriter(HttpContext http) : IServerStreamWriter<ExportHeadChunk>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(ExportHeadChunk message) => WriteAsync(message, http.RequestAborted);

        public async Task WriteAsync(ExportHeadChunk message, CancellationToken cancellationToken)
        {
            if (message.Model is { } model)
            {
                var response = http.Response;
                response.StatusCode = StatusCodes.Status200OK;
                response.ContentType = "application/octet-stream";
                response.ContentLength = model.SizeBytes;
                response.Headers.ContentDisposition = $"attachment; filename=\"{FileName(model.Head, model.Version)}\"";
                response.Headers[Sha256Header] = model.Sha256;
                response.Headers.CacheControl = "no-store";
                response.Headers.XContentTypeOptions = "nosniff";
            }
            if (!message.Data.IsEmpty)
            {
                await http.Response.Body.WriteAsync(message.Data.Memory, cancellationToken);
            }
        }
    }
}

using Graft.Gateway.Auth;
using Graft.Gateway.Flows;
using System.Globalization;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Graft.Gateway.Services;
using Graft.V1;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Http;

/// <summary><c>POST /v1/heads/{name}/train</c>: TrainHead for HTTP clients (client streaming does not transcode).
/// A multipart upload (files named <c>class:&lt;label&gt;</c> or <c>value:&lt;number&gt;</c>, an optional <c>spec</c>
/// field with a HeadSpec as JSON, an optional <c>kind</c>) is handed to the same <see cref="TrainingFlow"/> as the gRPC
/// call, with the same limits and admin token; its progress streams back as NDJSON, one TrainProgress per line.
/// A failure before the first line is an ordinary HTTP error; a failure after it is a last line <c>{"error": {...}}</c>.</summary>
public static partial class TrainEndpoint
{
    public const string Route = "/v1/heads/{name}/train";
    public const string ClassPrefix = "class:";
    public const string ValuePrefix = "value:";

    public static async Task HandleAsync(HttpContext http, string name, TrainingFlow trainer, BearerTokenInterceptor access,
        IOptions<GatewayOptions> options, ILoggerFactory loggers)
    {
        var progress = new NdjsonProgressWriter(http);
        await HttpErrors.GuardAsync(http, loggers.CreateLogger(typeof(TrainEndpoint)), async () =>
        {
            access.Authorize("POST /v1/heads/{name}/train", admin: true, http.Request.Headers.Authorization, http.Connection.RemoteIpAddress?.ToString() ?? "");
            var (spec, files) = await ReadAsync(http, name, options.Value);
            try
            {
                await trainer.TrainAsync(new UploadReader(spec, files, http.RequestAborted), progress, http.RequestAborted);
            }
            catch (RpcException e)
            {
                throw WithFileName(e, files);
            }
        }, (context, error) => progress.Started ? progress.WriteErrorAsync(error) : HttpErrors.WriteAsync(context, error));
    }

    private static async Task<(HeadSpec Spec, IReadOnlyList<IFormFile> Files)> ReadAsync(HttpContext http, string name, GatewayOptions o)
    {
        // The HTTP form of MaxTrainBytes / MaxTrainExamples: refuse early with 413 rather than buffer a huge body.
        var maxBody = o.MaxTrainBytes + (o.MaxTrainExamples * 512L) + (1L << 20);
        if (http.Request.ContentLength > maxBody)
        {
            throw HttpErrors.TooLarge($"the upload is {http.Request.ContentLength} bytes; one training call accepts at most {o.MaxTrainBytes} bytes of images " +
                "(Graft:Gateway:MaxTrainBytes). Train on fewer images.");
        }
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = maxBody;
        }
        if (!http.Request.HasFormContentType)
        {
            throw Invalid("send the training images as multipart/form-data: one file field per image, named class:<label> (classifier) or value:<number> (regressor).");
        }
        var form = await http.Request.ReadFormAsync(new FormOptions
        {
            MultipartBodyLengthLimit = maxBody,
            ValueCountLimit = o.MaxTrainExamples + 16,
        }, http.RequestAborted);

        if (form.Files.Count > o.MaxTrainExamples)
        {
            throw HttpErrors.TooLarge($"{form.Files.Count} images in one training call; the gateway accepts at most {o.MaxTrainExamples} (Graft:Gateway:MaxTrainExamples).");
        }

        var spec = new HeadSpec();
        if (form["spec"].FirstOrDefault() is { Length: > 0 } json)
        {
            try
            {
                spec = ProtoJson.Parser.Parse<HeadSpec>(json);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw Invalid($"the 'spec' field is not a HeadSpec in JSON ({e.Message}); e.g. {{\"epochs\": 40, \"hidden\": {{\"sizes\": [128]}}}}.");
            }
        }
        spec.Name = name;

        var classes = form.Files.Count(f => f.Name.StartsWith(ClassPrefix, StringComparison.Ordinal));
        var values = form.Files.Count(f => f.Name.StartsWith(ValuePrefix, StringComparison.Ordinal));
        var other = form.Files.FirstOrDefault(f => !f.Name.StartsWith(ClassPrefix, StringComparison.Ordinal) && !f.Name.StartsWith(ValuePrefix, StringComparison.Ordinal));
        if (other is not null)
        {
            throw Invalid($"file '{other.FileName}' is in the field '{other.Name}': name each image's field class:<label> (e.g. class:sandal) or value:<number> (e.g. value:27.5).");
        }
        if (classes > 0 && values > 0)
        {
            throw Invalid("the upload mixes class:<label> and value:<number> images; a head is either a classifier (labels) or a regressor (numbers).");
        }

        var kind = form["kind"].FirstOrDefault()?.Trim().ToLowerInvariant();
        spec.Kind = kind switch
        {
            null or "" => spec.Kind != HeadKind.Unspecified ? spec.Kind : classes > 0 ? HeadKind.Classifier : values > 0 ? HeadKind.Regressor : HeadKind.Unspecified,
            "classifier" or "head_kind_classifier" => HeadKind.Classifier,
            "regressor" or "head_kind_regressor" => HeadKind.Regressor,
            _ => throw Invalid($"kind is '{kind}'; use classifier or regressor."),
        };
        return (spec, form.Files);
    }

    /// <summary>TrainingFlow numbers examples from 1 in upload order; a person knows their files by name.</summary>
    private static RpcException WithFileName(RpcException e, IReadOnlyList<IFormFile> files)
    {
        var match = ExampleNumber().Match(e.Status.Detail);
        if (!match.Success || !int.TryParse(match.Groups[1].Value, CultureInfo.InvariantCulture, out var number) || number < 1 || number > files.Count)
        {
            return e;
        }
        var detail = $"image {number} ('{files[number - 1].FileName}'){e.Status.Detail[match.Length..]}";
        return new RpcException(new Status(e.StatusCode, detail), e.Trailers);
    }

    [GeneratedRegex(@"^example (\d+)")]
    private static partial Regex ExampleNumber();

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    /// <summary>The upload as the TrainHead request stream: the spec, then one example per file, read only when
    /// TrainingFlow asks for it.</summary>
    private sealed class UploadReader(HeadSpec spec, IReadOnlyList<IFormFile> files, CancellationToken aborted) : IAsyncStreamReader<TrainHeadRequest>
    {
        private int _next = -1;

        public TrainHeadRequest Current { get; private set; } = null!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (_next == -1)
            {
                _next = 0;
                Current = new TrainHeadRequest { Spec = spec };
                return true;
            }
            if (_next >= files.Count)
            {
                return false;
            }
            var file = files[_next++];
            var example = new LabelledImage();
            await using (var stream = file.OpenReadStream())
            {
                example.Image = await ByteString.FromStreamAsync(stream, aborted);
            }
            if (file.Name.StartsWith(ClassPrefix, StringComparison.Ordinal))
            {
                example.Label = file.Name[ClassPrefix.Length..];
            }
            else
            {
                var text = file.Name[ValuePrefix.Length..];
                example.Value = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                    ? value
                    : throw Invalid($"image {_next} ('{file.FileName}'): the target '{text}' is not a number (use a dot for decimals, e.g. value:27.5).");
            }
            Current = new TrainHeadRequest { Example = example };
            return true;
        }
    }
}

/// <summary>TrainProgress as NDJSON (<c>application/x-ndjson</c>), each line flushed at once so a browser or
/// <c>curl -N</c> sees every epoch as it ends.</summary>
public sealed class NdjsonProgressWriter(HttpContext http) : IServerStreamWriter<TrainProgress>
{
    public bool Started { get; private set; }

    public WriteOptions? WriteOptions { get; set; }

    public Task WriteAsync(TrainProgress message) => WriteAsync(message, http.RequestAborted);

    private TrainProgress? _held;

    public async Task WriteAsync(TrainProgress message, CancellationToken cancellationToken)
    {
        // The opening "0 of N images" line waits for the next one: an image refused in the first batch then still
        // gets a plain HTTP 400, not a 200 whose last line is the error.
        if (!Started && _held is null && message is { Phase: TrainPhase.Extracting, ImagesDone: 0 })
        {
            _held = message;
            return;
        }
        Start();
        var text = _held is null ? "" : ProtoJson.Formatter.Format(_held) + "\n";
        _held = null;
        await http.Response.WriteAsync(text + ProtoJson.Formatter.Format(message) + "\n", cancellationToken);
        await http.Response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>The last line after a failure mid-stream (the HTTP status is already 200 by then).</summary>
    public async Task WriteErrorAsync(RpcException error)
    {
        var line = System.Text.Json.JsonSerializer.Serialize(
            new ErrorLine(new ErrorBody((int)error.StatusCode, error.Status.Detail, [])), HttpJsonContext.Default.ErrorLine);
        await http.Response.WriteAsync(line + "\n", http.RequestAborted);
    }

    private void Start()
    {
        if (Started)
        {
            return;
        }
        Started = true;
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "application/x-ndjson; charset=utf-8";
        http.Response.Headers.CacheControl = "no-store";
        // No proxy buffering: progress must arrive while training runs.
        http.Response.Headers["X-Accel-Buffering"] = "no";
    }
}

public sealed record ErrorLine(ErrorBody Error);

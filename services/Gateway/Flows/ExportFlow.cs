using System.Diagnostics;
using System.Security.Cryptography;
using Google.Protobuf;
using Graft.V1;
using Grpc.Core;
using Graft.Gateway.Downstream;
using Graft.Gateway.Export;
using Onnx;

namespace Graft.Gateway.Flows;

/// <summary>ExportHead: fetches the head version from HeadService and the served graph from the backbone, refuses a
/// head trained on another backbone, composes one ONNX model (<see cref="OnnxModelComposer"/>) and streams it.
/// Composition lives here because the Gateway is the one place that talks to both services.</summary>
public sealed partial class ExportFlow(BackboneDownstream backbone, HeadsDownstream heads, ILogger<ExportFlow> logger)
{
    /// <summary>Largest piece of the file per message, well under the 16 MiB message limit.</summary>
    public const int ChunkBytes = 1 << 20;

    public async Task ExportAsync(ExportHeadRequest request, IServerStreamWriter<ExportHeadChunk> responseStream, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(request.Name))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "name is required: the name of a head (see ListHeads)."));
        }
        if (request.Version < 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"version is {request.Version}; use 0 for the serving version or a positive version number."));
        }
        if (!Enum.IsDefined(request.Input))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"input {(int)request.Input} is unknown; use EXPORT_INPUT_PIXELS (raw RGB) or EXPORT_INPUT_TENSOR (preprocessed)."));
        }
        var input = request.Input == ExportInput.Unspecified ? ExportInput.Pixels : request.Input;
        var started = Stopwatch.GetTimestamp();

        // The head first: an unknown head or version fails fast, before 45 MB of backbone graph move.
        var head = await heads.ExportVersionAsync(new ExportVersionRequest { Name = request.Name, Version = request.Version }, cancellationToken);
        var info = head.Head.Info;
        var (served, graphBytes) = await backbone.ExportGraphAsync(cancellationToken);
        if (!string.Equals(info.BackboneFingerprint, served.Fingerprint, StringComparison.Ordinal))
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"Head '{info.Name}' v{info.Version} is stale: it was trained on backbone '{info.BackboneFingerprint}', but the backbone serving now is '{served.Fingerprint}', " +
                "so an export would pair it with a graph it was never trained on. Retrain it on the current backbone (graft train), then export the new version."));
        }

        byte[] file;
        ModelProto model;
        try
        {
            model = OnnxModelComposer.Compose(ModelProto.Parser.ParseFrom(graphBytes), served, head, input);
            file = model.ToByteArray();
        }
        catch (InvalidOperationException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"Head '{info.Name}' v{info.Version} cannot be exported: {e.Message}"));
        }

        var description = new ExportedModel
        {
            Head = info.Name,
            Version = info.Version,
            Kind = info.Kind,
            BackboneFingerprint = served.Fingerprint,
            InputName = input == ExportInput.Tensor ? OnnxModelComposer.TensorInput : OnnxModelComposer.PixelsInput,
            InputType = input == ExportInput.Tensor ? "float32" : "uint8",
            InputShape = { input == ExportInput.Tensor ? [-1, .. served.InputShape] : [-1, served.InputShape[1], served.InputShape[2], 3] },
            OutputNames = { model.Graph.Output.Select(o => o.Name) },
            Labels = { info.Labels },
            Opset = model.OpsetImport.First(o => o.Domain is "" or "ai.onnx").Version,
            IrVersion = model.IrVersion,
            SizeBytes = file.LongLength,
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(file)),
        };
        await responseStream.WriteAsync(new ExportHeadChunk { Model = description }, cancellationToken);
        for (var offset = 0; offset < file.Length; offset += ChunkBytes)
        {
            await responseStream.WriteAsync(new ExportHeadChunk { Data = ByteString.CopyFrom(file, offset, Math.Min(ChunkBytes, file.Length - offset)) }, cancellationToken);
        }
        LogExported(logger, info.Name, info.Version, input.ToString(), file.LongLength, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(EventId = 4200, Level = LogLevel.Information, Message = "Exported head {Name} v{Version} ({Input} input): {Bytes} bytes in {Milliseconds:F0} ms")]
    private static partial void LogExported(ILogger logger, string name, int version, string input, long bytes, double milliseconds);
}

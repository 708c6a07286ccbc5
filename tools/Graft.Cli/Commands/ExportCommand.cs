using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Graft.Cli.Client;
using Graft.V1;
using Grpc.Core;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft heads export NAME[@VERSION] -o model.onnx</c>: one self-contained ONNX file (admin).</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        Argument<string> head = new("head") { Description = "Head name, optionally with a version: category or category@2 (default: the version that serves now)." };
        Option<FileInfo> output = new("--output", "-o") { Description = "The ONNX file to write (default: <head>-v<version>.onnx in the current folder)." };
        Option<string> input = new("--input")
        {
            Description = "pixels: the model takes uint8 RGB [N,H,W,3] resized to the backbone's input size and preprocesses itself; " +
                          "tensor: float32 [N,3,H,W] already preprocessed.",
            DefaultValueFactory = _ => "pixels",
        };
        input.AcceptOnlyFromAmong("pixels", "tensor");
        var export = new Command("export", "Write a head version and the backbone as one ONNX model that runs anywhere ONNX Runtime does (admin).") { head, output, input };
        export.SetRun(async (parse, ct) =>
        {
            var (name, version) = ParseHead(parse.GetValue(head)!);
            var request = new ExportHeadRequest { Name = name, Version = version, Input = parse.GetValue(input) == "tensor" ? ExportInput.Tensor : ExportInput.Pixels };
            using var session = GlobalOptions.Connect(parse);
            var target = parse.GetValue(output);
            var written = await session.Call($"export head \"{parse.GetValue(head)}\"", async c =>
            {
                using var call = c.ExportHead(request, session.Headers(), DateTime.UtcNow.AddMinutes(10), ct);
                ExportedModel? model = null;
                string? temporary = null;
                FileStream? file = null;
                try
                {
                    await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
                    {
                        if (chunk.Model is { } described)
                        {
                            model = described;
                            target ??= new FileInfo($"{described.Head}-v{described.Version}.onnx");
                            target.Directory?.Create();
                            // Written beside the target and renamed at the end: an interrupted export leaves no half file.
                            temporary = target.FullName + ".partial";
                            file = new FileStream(temporary, FileMode.Create, FileAccess.ReadWrite);
                            continue;
                        }
                        if (file is null) throw new CliException("The Gateway sent model bytes before describing the model; retry the export.");
                        chunk.Data.WriteTo(file);
                    }
                    if (model is null || file is null) throw new CliException("The Gateway ended the export without a model; retry.");
                    file.Position = 0;
                    var sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, ct));
                    if (file.Length != model.SizeBytes || sha != model.Sha256)
                    {
                        throw new CliException($"The exported file arrived damaged ({file.Length} of {model.SizeBytes} bytes, SHA-256 {sha}); retry the export.");
                    }
                    await file.DisposeAsync();
                    file = null;
                    File.Move(temporary!, target!.FullName, overwrite: true);
                    temporary = null;
                    return model;
                }
                finally
                {
                    if (file is not null) await file.DisposeAsync();
                    if (temporary is not null) File.Delete(temporary);
                }
            });
            Describe(written, target!);
            return ExitCodes.Ok;
        });
        return export;
    }

    /// <summary>"name" or "name@version".</summary>
    private static (string Name, int Version) ParseHead(string text)
    {
        var at = text.LastIndexOf('@');
        if (at < 0) return (text, 0);
        return int.TryParse(text[(at + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0
            ? (text[..at], version)
            : throw new CliException($"'{text}' is not NAME or NAME@VERSION with a positive version number, e.g. category@2.", ExitCodes.Usage);
    }

    private static void Describe(ExportedModel m, FileInfo target)
    {
        AnsiConsole.MarkupLine($"Wrote [bold]{Markup.Escape(target.FullName)}[/] ({m.SizeBytes / 1048576.0:0.0} MiB): {Markup.Escape(m.Head)} v{m.Version} on backbone {Markup.Escape(m.BackboneFingerprint)}, ONNX opset {m.Opset}.");
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("name").AddColumn("type and shape");
        table.AddRow("input", Markup.Escape(m.InputName), Markup.Escape($"{m.InputType} [{string.Join(", ", m.InputShape.Select(d => d < 0 ? "N" : d.ToString(CultureInfo.InvariantCulture)))}]"));
        foreach (var name in m.OutputNames)
        {
            table.AddRow("output", Markup.Escape(name), Markup.Escape(name switch
            {
                "probabilities" => $"float32 [N, {m.Labels.Count}]: softmax over the labels",
                "class_index" => "int64 [N]: index of the most probable label",
                _ => "float32 [N]: in the units of the training targets",
            }));
        }
        AnsiConsole.Write(table);
        if (m.Labels.Count > 0)
        {
            AnsiConsole.MarkupLine($"labels (metadata \"labels\"): {Markup.Escape(string.Join(", ", m.Labels))}");
        }
        AnsiConsole.MarkupLine(m.InputName == "pixels"
            ? "Feed RGB bytes resized and centre-cropped as metadata \"preprocessing\" says; the rest of the preprocessing runs inside the model."
            : "Feed tensors preprocessed exactly as metadata \"preprocessing\" says.");
    }
}

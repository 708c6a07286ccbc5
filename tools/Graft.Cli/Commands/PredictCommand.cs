using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Graft.Cli.Client;
using Graft.Cli.Data;
using Graft.Cli.Output;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft predict &lt;image or folder...&gt;</c>: runs heads on images, one backbone pass per image.</summary>
public static class PredictCommand
{
    public static Command Create()
    {
        Argument<string[]> inputs = new("images") { Description = "Image files or folders (searched recursively).", Arity = ArgumentArity.OneOrMore };
        Option<string[]> heads = new("--head", "--heads")
        {
            Description = "Heads to run, comma-separated or repeated (default: every active head that is not stale).",
            AllowMultipleArgumentsPerToken = true,
        };
        Option<int> topK = new("--top-k") { Description = "Classifier labels to show per head.", DefaultValueFactory = _ => 3 };
        Option<bool> json = new("--json") { Description = "Print JSON (one object per image) instead of a table." };

        var command = new Command("predict", "Predict with one or more heads on images.") { inputs, heads, topK, json };
        command.SetRun(async (parse, ct) =>
        {
            var paths = TrainingData.FindImages(parse.GetValue(inputs)!);
            var headNames = (parse.GetValue(heads) ?? []).SelectMany(h => h.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToList();
            using var session = GlobalOptions.Connect(parse);
            var results = await PredictStreamClient.PredictAsync(session, paths, headNames, parse.GetValue(topK), ct);

            if (parse.GetValue(json)) WriteJson(results);
            else WriteTable(results);
            var failed = results.Count(r => r.Reply is null);
            if (failed > 0)
                CommandRunner.Error.MarkupLine($"[red]{failed} of {results.Count} image(s) failed[/] (see the error column).");
            return failed == 0 ? ExitCodes.Ok : ExitCodes.Failed;
        });
        return command;
    }

    private static void WriteTable(IReadOnlyList<ImagePrediction> results)
    {
        var headNames = results.Where(r => r.Reply is not null).SelectMany(r => r.Reply!.Results.Select(o => o.Head)).Distinct().ToList();
        var table = new Table().Border(TableBorder.Rounded).AddColumn("image");
        foreach (var name in headNames) table.AddColumn(Markup.Escape(name));
        if (results.Any(r => r.Reply is null)) table.AddColumn("error");
        foreach (var r in results)
        {
            var cells = new List<string> { Markup.Escape(Format.Path(r.Path)) };
            foreach (var name in headNames)
            {
                var output = r.Reply?.Results.FirstOrDefault(o => o.Head == name);
                cells.Add(output is null ? "" : Markup.Escape($"{Format.Output(output)} v{output.Version}"));
            }
            if (table.Columns.Count > headNames.Count + 1) cells.Add(r.Error is null ? "" : $"[red]{Markup.Escape($"{r.ErrorCode}: {r.Error}")}[/]");
            table.AddRow(cells.ToArray());
        }
        AnsiConsole.Write(table);
    }

    private static void WriteJson(IReadOnlyList<ImagePrediction> results)
    {
        var formatter = new JsonFormatter(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));
        var array = new JsonArray();
        foreach (var r in results)
        {
            var item = new JsonObject { ["image"] = r.Path };
            if (r.Reply is not null) item["reply"] = JsonNode.Parse(formatter.Format(r.Reply));
            else item["error"] = new JsonObject { ["code"] = r.ErrorCode.ToString(), ["message"] = r.Error };
            array.Add(item);
        }
        // Plain Console: Spectre would wrap long lines.
        Console.Out.WriteLine(array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}

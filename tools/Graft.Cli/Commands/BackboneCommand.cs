using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft backbone describe</c> and <c>graft backbone quantize</c>.</summary>
public static class BackboneCommand
{
    public static Command Create()
    {
        var backbone = new Command("backbone", "Inspect the frozen backbone.");
        var describe = new Command("describe", "Show the backbone in use: model, fingerprint, cut points, device, batching, cache.");
        describe.SetRun(async (parse, ct) =>
        {
            using var session = GlobalOptions.Connect(parse);
            var reply = await session.Call("describe the backbone",
                c => c.DescribeAsync(new DescribeRequest(), session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
            var b = reply.Backbone ?? new BackboneInfo();
            var table = new Table().Border(TableBorder.Rounded).AddColumn("property").AddColumn("value");
            table.AddRow("name", Markup.Escape(b.Name));
            table.AddRow("fingerprint", Markup.Escape(b.Fingerprint));
            table.AddRow("input shape", string.Join(" x ", b.InputShape));
            table.AddRow("feature dimension", b.FeatureDimension.ToString(CultureInfo.InvariantCulture));
            table.AddRow("cut tensor", Markup.Escape(b.CutTensor));
            table.AddRow("cut points (fine-tuning)", b.CutPoints.Count == 0
                ? "none (heads train on the final features only)"
                : Markup.Escape(string.Join("; ", b.CutPoints.Select(c =>
                    $"{c.Name}: {c.Tensor} {string.Join("x", c.Shape)}, tail {c.TailParameters / 1e6:0.0} M parameters"))));
            table.AddRow("preprocessing", Markup.Escape(b.Preprocessing));
            table.AddRow("execution provider", Markup.Escape(b.ExecutionProvider));
            if (!string.IsNullOrEmpty(b.Precision)) table.AddRow("precision", Markup.Escape(b.Precision));
            if (b.Sessions > 0)
            {
                table.AddRow("execution layout", $"{b.Sessions} session(s) x {b.IntraOpThreads} intra-op thread(s) on {b.Cores} core(s), " +
                    (b.Spinning ? "spinning" : "no spinning"));
            }
            table.AddRow("dynamic batching", $"up to {b.MaxBatchSize} images, wait at most {Format.Number(b.MaxQueueDelayMs)} ms");
            table.AddRow("feature cache", $"{b.CacheUsedBytes / 1048576.0:0.0} MiB used of {b.CacheCapacityBytes / 1048576.0:0.0} MiB");
            table.AddRow("heads", $"{reply.Heads.Count} ({reply.Heads.Count(h => h.Stale)} stale)");
            AnsiConsole.Write(table);
            return ExitCodes.Ok;
        });
        backbone.Subcommands.Add(describe);
        backbone.Subcommands.Add(CreateQuantize());
        return backbone;
    }

    /// <summary><c>graft backbone quantize</c>: runs the BackboneService's offline quantizer (it holds ONNX Runtime and
    /// the preprocessing; the CLI does not) and passes its output through.</summary>
    private static Command CreateQuantize()
    {
        var profile = new Option<string>("--profile") { Description = "Backbone profile to quantize (resnet18, resnet18-int8, vgg16 with --model).", DefaultValueFactory = _ => "resnet18" };
        var model = new Option<string?>("--model") { Description = "ONNX model file (overrides the profile's)." };
        var calibration = new Option<string?>("--calibration") { Description = "Folder of calibration images (default: the committed samples shipped with the service)." };
        var images = new Option<int?>("--images") { Description = "Calibration images to use (default 32)." };
        var method = new Option<string?>("--method") { Description = "Calibration: percentile (default) or minmax." };
        var percentile = new Option<string?>("--percentile") { Description = "Share of values kept in range for --method percentile (default 99.999)." };
        var output = new Option<string?>("--out", "-o") { Description = "Output file (default: <profile>-int8.onnx here)." };
        var quantize = new Command("quantize", "Quantize the backbone to int8 (static QDQ, calibrated on images) and write the ONNX file.")
        {
            profile, model, calibration, images, method, percentile, output,
        };
        quantize.SetRun(async (parse, ct) =>
        {
            var dll = Stack.ServiceLocator.FindServiceDll("Graft.BackboneService", "BackboneService");
            var start = new System.Diagnostics.ProcessStartInfo(Graft.Launcher.DotnetHost.Path) { UseShellExecute = false };
            foreach (var a in new[] { dll, "quantize", "--profile", parse.GetValue(profile)! }) start.ArgumentList.Add(a);
            void Add(string name, string? value)
            {
                if (value is null) return;
                start.ArgumentList.Add(name);
                start.ArgumentList.Add(name is "--model" or "--calibration" or "--out" ? Path.GetFullPath(value) : value);
            }
            Add("--model", parse.GetValue(model));
            Add("--calibration", parse.GetValue(calibration));
            Add("--images", parse.GetValue(images)?.ToString(CultureInfo.InvariantCulture));
            Add("--method", parse.GetValue(method));
            Add("--percentile", parse.GetValue(percentile));
            Add("--out", parse.GetValue(output));
            using var process = System.Diagnostics.Process.Start(start) ?? throw new CliException("Could not start the quantizer.", ExitCodes.Failed);
            await process.WaitForExitAsync(ct);
            return process.ExitCode switch { 0 => ExitCodes.Ok, 2 => ExitCodes.Usage, _ => ExitCodes.Failed };
        });
        return quantize;
    }
}


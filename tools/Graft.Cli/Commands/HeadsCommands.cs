using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft heads list|show|delete|activate</c> and <c>graft backbone describe</c>.</summary>
public static class HeadsCommands
{
    public static Command Create()
    {
        var heads = new Command("heads", "List, inspect, delete and roll back heads.");

        var list = new Command("list", "List every head with its active version and whether it is stale.");
        list.SetRun(async (parse, ct) =>
        {
            using var session = GlobalOptions.Connect(parse);
            var reply = await session.Call("list heads",
                c => c.ListHeadsAsync(new ListHeadsRequest(), session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
            if (reply.Heads.Count == 0)
            {
                AnsiConsole.MarkupLine("No heads yet: train one with `graft train <name> --data <folder or csv>`, or run `graft demo`.");
                return ExitCodes.Ok;
            }
            var table = new Table().Border(TableBorder.Rounded)
                .AddColumns("head", "kind", "active", "versions", "validation metric", "trained on", "state");
            foreach (var h in reply.Heads)
            {
                var active = h.Versions.FirstOrDefault(v => v.Version == h.ActiveVersion);
                table.AddRow(
                    Markup.Escape(h.Name),
                    active is null ? "" : Format.Kind(active.Kind),
                    h.ActiveVersion == 0 ? "none" : $"v{h.ActiveVersion}",
                    h.Versions.Count.ToString(CultureInfo.InvariantCulture),
                    active is null ? "" : Markup.Escape(Metric(active)),
                    active is null ? "" : Markup.Escape(Format.Short(active.BackboneFingerprint)),
                    h.Stale ? "[yellow]stale (other backbone)[/]" : "[green]ready[/]");
            }
            AnsiConsole.Write(table);
            return ExitCodes.Ok;
        });

        Argument<string> showName = new("name") { Description = "Head name." };
        var show = new Command("show", "Show every version of a head with its metrics and training settings.") { showName };
        show.SetRun(async (parse, ct) =>
        {
            var name = parse.GetValue(showName)!;
            using var session = GlobalOptions.Connect(parse);
            var info = await session.Call($"show head \"{name}\"",
                c => c.GetHeadAsync(new GetHeadRequest { Name = name }, session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(info.Name)}[/]: active v{info.ActiveVersion}{(info.Stale ? " [yellow](stale: trained on another backbone)[/]" : "")}");
            var table = new Table().Border(TableBorder.Rounded)
                .AddColumns("version", "kind", "created (UTC)", "labels", "input dim", "epochs", "validation metric", "backbone", "size");
            foreach (var v in info.Versions)
            {
                table.AddRow(
                    (v.Version == info.ActiveVersion ? "* v" : "  v") + v.Version.ToString(CultureInfo.InvariantCulture),
                    Format.Kind(v.Kind),
                    v.Created is null ? "" : v.Created.ToDateTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                    Markup.Escape(v.Labels.Count == 0 ? "-" : string.Join(", ", v.Labels.Take(6)) + (v.Labels.Count > 6 ? ", ..." : "")),
                    v.InputDimension.ToString(CultureInfo.InvariantCulture),
                    (v.Metrics?.EpochsRun ?? 0).ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(Metric(v)),
                    Markup.Escape(Format.Short(v.BackboneFingerprint)),
                    $"{v.SizeBytes / 1024.0:0.0} KiB");
            }
            AnsiConsole.Write(table);
            if (info.Versions.FirstOrDefault(v => v.Version == info.ActiveVersion) is { } activeVersion)
                AnsiConsole.Write(TrainView.Metrics(activeVersion));
            return ExitCodes.Ok;
        });

        Argument<string> deleteName = new("name") { Description = "Head name." };
        Argument<int> deleteVersion = new("version") { Description = "Version to delete (must not be the active one); omit to delete the head with every version.", Arity = ArgumentArity.ZeroOrOne };
        var delete = new Command("delete", "Delete a head, or one of its inactive versions (admin).") { deleteName, deleteVersion };
        delete.SetRun(async (parse, ct) =>
        {
            var name = parse.GetValue(deleteName)!;
            using var session = GlobalOptions.Connect(parse);
            var reply = await session.Call($"delete head \"{name}\"",
                c => c.DeleteHeadAsync(new DeleteHeadRequest { Name = name, Version = parse.GetValue(deleteVersion) }, session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
            AnsiConsole.MarkupLine($"Deleted {Markup.Escape(name)} version(s) {string.Join(", ", reply.DeletedVersions.Select(v => "v" + v.ToString(CultureInfo.InvariantCulture)))}.");
            return ExitCodes.Ok;
        });

        Argument<string> activateName = new("name") { Description = "Head name." };
        Argument<int> activateVersion = new("version") { Description = "Version to serve from now on." };
        var activate = new Command("activate", "Serve an existing version of a head: roll back or roll forward (admin).") { activateName, activateVersion };
        activate.SetRun(async (parse, ct) =>
        {
            var name = parse.GetValue(activateName)!;
            var version = parse.GetValue(activateVersion);
            using var session = GlobalOptions.Connect(parse);
            var info = await session.Call($"activate {name} v{version}",
                c => c.ActivateHeadAsync(new ActivateVersionRequest { Name = name, Version = version }, session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
            AnsiConsole.MarkupLine($"{Markup.Escape(info.Name)} now serves v{info.ActiveVersion}.");
            return ExitCodes.Ok;
        });

        heads.Subcommands.Add(list);
        heads.Subcommands.Add(show);
        heads.Subcommands.Add(delete);
        heads.Subcommands.Add(activate);
        return heads;
    }

    public static Command CreateBackbone()
    {
        var backbone = new Command("backbone", "Inspect the frozen backbone.");
        var describe = new Command("describe", "Show the backbone in use: model, fingerprint, cut point, device, batching, cache.");
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
            var start = new System.Diagnostics.ProcessStartInfo(Stack.ServiceLocator.DotnetHost()) { UseShellExecute = false };
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

    /// <summary>The headline validation metric of a version with its baseline.</summary>
    public static string Metric(HeadVersionInfo v)
    {
        var m = v.Metrics;
        if (m is null) return "";
        return v.Kind == HeadKind.Regressor
            ? $"MAE {Format.Number(m.Mae)} (baseline {Format.Number(m.BaselineMae)})"
            : $"accuracy {Format.Percent(m.Accuracy)} (baseline {Format.Percent(m.BaselineAccuracy)})";
    }
}

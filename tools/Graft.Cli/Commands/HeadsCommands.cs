using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft heads list|show|delete|activate|retrain|export</c>.</summary>
public static class HeadsCommands
{
    public static Command Create()
    {
        var heads = new Command("heads", "List, inspect, delete, roll back and retrain heads.");

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
                .AddColumns("head", "kind", "depth", "active", "versions", "metric", "trained on", "ready for backbones", "state", "retrainable");
            foreach (var h in reply.Heads)
            {
                var active = h.Versions.FirstOrDefault(v => v.Version == h.ActiveVersion);
                table.AddRow(
                    Markup.Escape(h.Name),
                    active is null ? "" : active.Kind.Name(),
                    active is null ? "" : Markup.Escape(Format.Depth(active)),
                    h.ActiveVersion == 0 ? "none" : $"v{h.ActiveVersion}",
                    h.Versions.Count.ToString(CultureInfo.InvariantCulture),
                    active is null ? "" : Markup.Escape(Metric(active)),
                    active is null ? "" : Markup.Escape(Format.Short(active.BackboneFingerprint)),
                    Markup.Escape(ReadyFor(h)),
                    (h.Stale ? "[yellow]stale (other backbone)[/]" : "[green]ready[/]") + SplitCommands.Describe(h),
                    active is null ? "" : Retrainable(active));
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
                .AddColumns("version", "kind", "depth", "created (UTC)", "labels", "input dim", "epochs", "metric", "backbone", "size", "training set");
            foreach (var v in info.Versions)
            {
                table.AddRow(
                    (v.Version == info.ActiveVersion ? "* v" : "  v") + v.Version.ToString(CultureInfo.InvariantCulture),
                    v.Kind.Name(),
                    Markup.Escape(Format.Depth(v)),
                    v.Created is null ? "" : v.Created.ToDateTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                    Markup.Escape(v.Labels.Count == 0 ? "-" : string.Join(", ", v.Labels.Take(6)) + (v.Labels.Count > 6 ? ", ..." : "")),
                    v.InputDimension.ToString(CultureInfo.InvariantCulture),
                    (v.Metrics?.EpochsRun ?? 0).ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(Metric(v)),
                    Markup.Escape(Format.Short(v.BackboneFingerprint)),
                    $"{v.SizeBytes / 1024.0:0.0} KiB",
                    Retrainable(v));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"Ready for backbones: {Markup.Escape(ReadyFor(info))}{SplitCommands.Describe(info)}");
            SplitCommands.WriteTraffic(info);
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
        heads.Subcommands.Add(RetrainCommand.Create());
        foreach (var command in SplitCommands.Create())
        {
            heads.Subcommands.Add(command);
        }
        heads.Subcommands.Add(ExportCommand.Create());
        return heads;
    }

    /// <summary>"yes (24 images, 41.2 KiB)" when the version's training set is stored, so `heads retrain` can use it.</summary>
    public static string Retrainable(HeadVersionInfo v) => v.Retrainable
        ? $"[green]yes[/] ({v.DatasetExamples.ToString(CultureInfo.InvariantCulture)} examples, {(v.DatasetBytes / 1024.0).ToString("0.0", CultureInfo.InvariantCulture)} KiB)"
        : "[yellow]not retrainable[/]";

    /// <summary>The backbones a head has an active version for, e.g. "resnet18:cb198da0 v1, resnet18-int8:9f1e22b0 v3".</summary>
    public static string ReadyFor(HeadInfo h) => h.Backbones.Count == 0 ? "none"
        : string.Join(", ", h.Backbones.Select(b => $"{Format.Short(b.BackboneFingerprint)} v{b.ServingVersion.ToString(CultureInfo.InvariantCulture)}"));

    /// <summary>The headline validation metric of a version with its baseline.</summary>
    public static string Metric(HeadVersionInfo v)
    {
        var m = v.Metrics;
        if (m is null) return "";
        var metric = v.Kind == HeadKind.Regressor
            ? $"MAE {Format.Number(m.Mae)} (baseline {Format.Number(m.BaselineMae)})"
            : $"accuracy {Format.Percent(m.Accuracy)} (baseline {Format.Percent(m.BaselineAccuracy)})";
        return m.ValidationRows > 0 || m.TrainRows == 0 ? metric : metric + " on the training rows";
    }
}

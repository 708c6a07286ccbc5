using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Grpc.Core;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft heads retrain NAME</c> / <c>graft heads retrain --stale</c>: trains heads again from their stored
/// training sets on the backbone serving now (admin).</summary>
public static class RetrainCommand
{
    public static Command Create()
    {
        Argument<string?> name = new("name") { Description = "Head to retrain (omit with --stale).", Arity = ArgumentArity.ZeroOrOne };
        Option<int> version = new("--version") { Description = "The version whose training set and settings to reuse (default: the version serving now)." };
        Option<bool> stale = new("--stale") { Description = "Retrain every head that has no version for the backbone serving now, one after the other." };
        Option<string> backbone = new("--backbone")
        {
            Description = "Fingerprint of the backbone to retrain for (see `graft heads list`). During a rolling upgrade, when old and new " +
                "backbone replicas both serve, name the new one: every image is then extracted by a replica of it. Default: the backbone that answers first.",
        };
        var retrain = new Command("retrain",
            "Train a head again from the training set stored with it, on the backbone serving now, and publish the result as a new version " +
            "(admin). Heads trained with keep_training_data off are not retrainable. Exit code 1 when any head failed.")
        {
            name, version, stale, backbone,
        };
        retrain.SetRun(async (parse, ct) =>
        {
            var head = parse.GetValue(name);
            var all = parse.GetValue(stale);
            if ((head is null) == !all)
                throw new CliException("name a head (graft heads retrain NAME) or pass --stale, not both.", ExitCodes.Usage);
            using var session = GlobalOptions.Connect(parse);
            if (head is not null)
            {
                var published = await RetrainAsync(session, head, parse.GetValue(version), parse.GetValue(backbone), ct);
                AnsiConsole.MarkupLine($"Published [bold green]{Markup.Escape(published.Name)} v{published.Version}[/] for backbone {Markup.Escape(published.BackboneFingerprint)}.");
                return ExitCodes.Ok;
            }
            return await RetrainStaleAsync(session, parse.GetValue(backbone), ct);
        });
        return retrain;
    }

    private static async Task<int> RetrainStaleAsync(GatewaySession session, string? backbone, CancellationToken ct)
    {
        var described = await session.Call("describe the stack",
            c => c.DescribeAsync(new DescribeRequest(), session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
        var fingerprint = string.IsNullOrEmpty(backbone) ? described.Backbone.Fingerprint : backbone;
        var stale = described.Heads.Where(h => h.Versions.Count > 0 && h.Versions.All(v => v.BackboneFingerprint != fingerprint)).ToList();
        if (stale.Count == 0)
        {
            AnsiConsole.MarkupLine($"No stale heads: every head has a version for backbone {Markup.Escape(fingerprint)}.");
            return ExitCodes.Ok;
        }
        AnsiConsole.MarkupLine($"{stale.Count} head(s) have no version for backbone {Markup.Escape(fingerprint)}: {Markup.Escape(string.Join(", ", stale.Select(h => h.Name)))}");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("head", "result", "detail");
        var failed = 0;
        foreach (var head in stale)
        {
            try
            {
                var published = await RetrainAsync(session, head.Name, 0, backbone, ct);
                table.AddRow(Markup.Escape(head.Name), $"[green]v{published.Version}[/]", Markup.Escape(HeadsCommands.Metric(published)));
            }
            catch (CliException e) when (e.ExitCode == ExitCodes.Failed)
            {
                failed++;
                CommandRunner.WriteError(e.Message);
                table.AddRow(Markup.Escape(head.Name), "[red]failed[/]", Markup.Escape(e.Message));
            }
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"Retrained {stale.Count - failed} of {stale.Count} stale head(s); {failed} failed.");
        return failed == 0 ? ExitCodes.Ok : ExitCodes.Failed;
    }

    private static async Task<HeadVersionInfo> RetrainAsync(GatewaySession session, string head, int version, string? backbone, CancellationToken ct)
    {
        AnsiConsole.MarkupLine($"Retraining [bold]{Markup.Escape(head)}[/] via {session.Display}");
        var print = TrainView.Lines(head);
        return await session.Call($"retrain head \"{head}\"", async c =>
        {
            using var call = c.RetrainHead(new RetrainHeadRequest { Name = head, Version = version, BackboneFingerprint = backbone ?? "" }, session.Headers(), cancellationToken: ct);
            HeadVersionInfo? published = null;
            await foreach (var progress in call.ResponseStream.ReadAllAsync(ct))
            {
                print(progress);
                if (progress.Phase == TrainPhase.Published) published = progress.Published;
            }
            return published ?? throw new CliException($"The Gateway ended the retraining of \"{head}\" without publishing a version.");
        });
    }
}

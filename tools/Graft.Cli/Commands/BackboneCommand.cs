using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft backbone describe</c>.</summary>
public static class BackboneCommand
{
    public static Command Create()
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
            table.AddRow("dynamic batching", $"up to {b.MaxBatchSize} images, wait at most {Format.Number(b.MaxQueueDelayMs)} ms");
            table.AddRow("feature cache", $"{b.CacheUsedBytes / 1048576.0:0.0} MiB used of {b.CacheCapacityBytes / 1048576.0:0.0} MiB");
            table.AddRow("heads", $"{reply.Heads.Count} ({reply.Heads.Count(h => h.Stale)} stale)");
            AnsiConsole.Write(table);
            return ExitCodes.Ok;
        });
        backbone.Subcommands.Add(describe);
        return backbone;
    }
}

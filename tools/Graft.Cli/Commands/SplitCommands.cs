using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft heads canary|shadow|promote|abort</c>: try a new version of a head on part of the traffic (canary)
/// or on all of it without returning its answers (shadow), then promote it or abort (admin).</summary>
public static class SplitCommands
{
    public static IEnumerable<Command> Create()
    {
        Argument<string> canaryName = new("name") { Description = "Head name." };
        Option<int> canaryVersion = new("--version") { Description = "The candidate version (not the one active for its backbone).", Required = true };
        Option<double> percent = new("--percent") { Description = "Share of the requests the candidate answers, in (0, 100].", Required = true };
        var canary = new Command("canary",
            "Send a share of the traffic to a candidate version (admin). A request that carries a request id always takes the same side; " +
            "the others are drawn at random. Per-version requests and latency: `graft heads show NAME` and /metrics. " +
            "Then `graft heads promote NAME` or `graft heads abort NAME`.") { canaryName, canaryVersion, percent };
        canary.SetRun((parse, ct) => SetAsync(parse, parse.GetValue(canaryName)!, parse.GetValue(canaryVersion), HeadSplitMode.Canary, parse.GetValue(percent), ct));

        Argument<string> shadowName = new("name") { Description = "Head name." };
        Option<int> shadowVersion = new("--version") { Description = "The candidate version (not the one active for its backbone).", Required = true };
        var shadow = new Command("shadow",
            "Run a candidate version on every request beside the active one, record whether it agreed and never return its answer (admin). " +
            "Agreement: same top label; for a regressor, within 10% of the training targets' standard deviation. " +
            "See `graft heads show NAME` and /metrics; then `graft heads promote NAME` or `graft heads abort NAME`.") { shadowName, shadowVersion };
        shadow.SetRun((parse, ct) => SetAsync(parse, parse.GetValue(shadowName)!, parse.GetValue(shadowVersion), HeadSplitMode.Shadow, 0, ct));

        var promote = SplitAction("promote", "Make the canary or shadow candidate the active version for its backbone and remove the split (admin).",
            "promote the candidate of", (c, request, headers, ct) => c.PromoteHeadAsync(request, headers, GatewaySession.UnaryDeadline, ct).ResponseAsync,
            info => $"{info.Name} now serves {HeadsCommands.ReadyFor(info)}.");
        var abort = SplitAction("abort", "Remove the canary or shadow split; the active versions keep serving (admin).",
            "abort the split of", (c, request, headers, ct) => c.AbortHeadSplitAsync(request, headers, GatewaySession.UnaryDeadline, ct).ResponseAsync,
            info => $"Split removed; {info.Name} serves {HeadsCommands.ReadyFor(info)}.");

        return [canary, shadow, promote, abort];
    }

    /// <summary>`graft heads promote|abort NAME`: one admin call on the head's split, then what the head now serves.</summary>
    private static Command SplitAction(string verb, string description, string doing,
        Func<V1.Gateway.GatewayClient, HeadSplitActionRequest, Grpc.Core.Metadata, CancellationToken, Task<HeadInfo>> call, Func<HeadInfo, string> outcome)
    {
        Argument<string> name = new("name") { Description = "Head name." };
        var command = new Command(verb, description) { name };
        command.SetRun(async (parse, ct) =>
        {
            var head = parse.GetValue(name)!;
            using var session = GlobalOptions.Connect(parse);
            var info = await session.Call($"{doing} \"{head}\"", c => call(c, new HeadSplitActionRequest { Name = head }, session.Headers(), ct));
            AnsiConsole.MarkupLine(Markup.Escape(outcome(info)));
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>" · canary v3 10%" / " · shadow v3" for a head with a split; empty otherwise.</summary>
    public static string Describe(HeadInfo h) => h.Split is not { } s ? ""
        : s.Mode == HeadSplitMode.Canary
            ? $" · canary v{s.CandidateVersion.ToString(CultureInfo.InvariantCulture)} {s.Percent.ToString("0.##", CultureInfo.InvariantCulture)}%"
            : $" · shadow v{s.CandidateVersion.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Per-version traffic the answering HeadService replica has seen since it started.</summary>
    public static void WriteTraffic(HeadInfo info)
    {
        if (info.Traffic.Count == 0)
        {
            return;
        }
        var table = new Table().Border(TableBorder.Rounded).Title("traffic (one HeadService replica, since it started)")
            .AddColumns("version", "role", "answers", "mean latency", "shadow agreement");
        foreach (var t in info.Traffic)
        {
            table.AddRow(
                "v" + t.Version.ToString(CultureInfo.InvariantCulture),
                t.Role,
                t.Requests.ToString(CultureInfo.InvariantCulture),
                t.MeanLatencyMs.ToString("0.000", CultureInfo.InvariantCulture) + " ms",
                t.ShadowCompared == 0 ? "" : $"{Format.Percent(t.ShadowAgreement)} ({t.ShadowAgreed}/{t.ShadowCompared})");
        }
        AnsiConsole.Write(table);
    }

    private static async Task<int> SetAsync(ParseResult parse, string name, int version, HeadSplitMode mode, double percent, CancellationToken ct)
    {
        using var session = GlobalOptions.Connect(parse);
        var info = await session.Call($"set the {(mode == HeadSplitMode.Canary ? "canary" : "shadow")} of \"{name}\"",
            c => c.SetHeadSplitAsync(new HeadSplitRequest { Name = name, Version = version, Mode = mode, Percent = percent }, session.Headers(), GatewaySession.UnaryDeadline, ct).ResponseAsync);
        var s = info.Split;
        AnsiConsole.MarkupLine(mode == HeadSplitMode.Canary
            ? $"{Markup.Escape(info.Name)}: v{s.CandidateVersion} answers {s.Percent.ToString("0.##", CultureInfo.InvariantCulture)}% of the requests for backbone {Markup.Escape(Format.Short(s.BackboneFingerprint))}, v{s.ActiveVersion} the rest."
            : $"{Markup.Escape(info.Name)}: v{s.CandidateVersion} shadows v{s.ActiveVersion} on every request for backbone {Markup.Escape(Format.Short(s.BackboneFingerprint))}; its answers are compared, never returned.");
        return ExitCodes.Ok;
    }
}

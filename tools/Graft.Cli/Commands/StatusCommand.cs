using System.CommandLine;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Stack;
using Graft.Launcher;
using Graft.V1;
using Grpc.Core;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft status</c>: what the <c>graft up</c> of a data folder runs (from its <c>stack.json</c>), and
/// what the Gateway serves (backbone, heads).</summary>
public static class StatusCommand
{
    public static Command Create()
    {
        var command = new Command("status", "Show the local stack that `graft up` runs: each service's state, pid, uptime and restarts, the backbone and the heads.")
        {
            UpCommand.DataDir,
        };
        command.SetRun(async (parse, ct) =>
        {
            var dataDir = Path.GetFullPath(parse.GetValue(UpCommand.DataDir)!);
            var path = StackStateFile.PathIn(dataDir);
            var state = StackStateFile.Read(path);
            if (state is null || !IsAlive(state.Pid))
                throw new CliException(
                    $"No `graft up` is running for {dataDir} ({(state is null ? $"no {StackStateFile.FileName}" : $"{StackStateFile.FileName} names pid {state.Pid}, which has exited")}). " +
                    "Start one with `graft up`, or pass the --data-dir it runs with.",
                    ExitCodes.Unreachable);

            var now = DateTimeOffset.UtcNow;
            AnsiConsole.MarkupLine($"graft up (pid {state.Pid}) running for {Uptime(now - state.StartedAt)}; gateway {Markup.Escape(state.Gateway)}");
            var table = new Table().Border(TableBorder.Rounded).AddColumns("service", "state", "pid", "uptime", "restarts", "last exit", "gRPC", "log");
            foreach (var s in state.Services)
            {
                table.AddRow(
                    s.Name,
                    s.State switch
                    {
                        ServiceState.Serving => "[green]serving[/]",
                        ServiceState.Failed => "[red]failed[/]",
                        _ => $"[yellow]{s.State.ToString().ToLowerInvariant()}[/]",
                    },
                    s.Pid?.ToString(CultureInfo.InvariantCulture) ?? "",
                    s.State is ServiceState.Serving or ServiceState.Starting ? Uptime(now - s.StartedAt) : "",
                    s.Restarts.ToString(CultureInfo.InvariantCulture),
                    s.LastExitCode?.ToString(CultureInfo.InvariantCulture) ?? "",
                    Markup.Escape(s.Grpc),
                    Markup.Escape(s.Log));
            }
            AnsiConsole.Write(table);

            // The backbone and head summary comes from the Gateway itself; the stack's own admin token is sent
            // in case the Gateway also guards reads (a predict token).
            var tokenFile = Path.Combine(dataDir, "admin-token");
            using var session = new GatewaySession(new Uri(state.Gateway),
                GlobalOptions.ResolveToken(parse) ?? (File.Exists(tokenFile) ? File.ReadAllText(tokenFile).Trim() : null));
            try
            {
                var reply = await session.Client.DescribeAsync(new DescribeRequest(), session.Headers(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
                var b = reply.Backbone ?? new BackboneInfo();
                AnsiConsole.MarkupLine($"backbone: {Markup.Escape(b.Name)} ({b.FeatureDimension} features, {Markup.Escape(b.ExecutionProvider)}), fingerprint {Markup.Escape(Output.Format.Short(b.Fingerprint))}");
                var stale = reply.Heads.Count(h => h.Stale);
                AnsiConsole.MarkupLine(reply.Heads.Count == 0
                    ? "heads: none yet"
                    : $"heads: {reply.Heads.Count} ({stale} stale): {Markup.Escape(string.Join(", ", reply.Heads.Select(h => $"{h.Name} v{h.ActiveVersion}")))}");
            }
            catch (RpcException e)
            {
                AnsiConsole.MarkupLine($"[yellow]The Gateway did not answer Describe[/]: {Markup.Escape(session.Translate(e, "describe the backbone").Message)}");
                return ExitCodes.Unreachable;
            }
            return state.Services.All(s => s.State == ServiceState.Serving) ? ExitCodes.Ok : ExitCodes.Unreachable;
        });
        return command;
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static string Uptime(TimeSpan t) => t.TotalHours >= 1
        ? $"{(int)t.TotalHours} h {t.Minutes} min"
        : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes} min {t.Seconds} s" : $"{t.TotalSeconds:0} s";
}

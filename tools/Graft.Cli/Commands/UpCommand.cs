using System.CommandLine;
using Graft.Cli.Stack;
using Graft.Launcher;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft up</c>: runs BackboneService, HeadService and Gateway locally until Ctrl-C.</summary>
public static class UpCommand
{
    public static readonly Option<int> BasePort = new("--base-port")
    {
        Description = "Gateway gRPC port; HTTP is +1, Backbone +10/+11, Heads +20/+21 (default 5100: 5100/5101, 5110/5111, 5120/5121).",
        DefaultValueFactory = _ => Graft.Launcher.PortPlan.DefaultBase,
    };

    public static readonly Option<string> DataDir = new("--data-dir")
    {
        Description = "Folder for the head registry (heads/), service logs (logs/) and the admin token file (admin-token).",
        DefaultValueFactory = _ => "data",
    };

    public static readonly Option<int> Timeout = new("--timeout")
    {
        Description = "Seconds to wait for every service to report SERVING.",
        DefaultValueFactory = _ => 300,
    };

    public static readonly Option<string?> LogDir = new("--log-dir")
    {
        Description = "Folder for the service logs (default <data-dir>/logs; e.g. /var/log/graft under systemd).",
    };

    public static readonly Option<long> LogMaxBytes = new("--log-max-bytes")
    {
        Description = "Bound of everything in the log folder together, in bytes; each service's log rolls over to <name>.log.1 at a sixth of it.",
        DefaultValueFactory = _ => StackSettings.DefaultLogMaxBytes,
    };

    public static readonly Option<int> MaxRestarts = new("--max-restarts")
    {
        Description = "A service that exits on its own is restarted (backoff 0.2 s doubling, at most 30 s); after this many restarts " +
                      "that each end within 60 s of starting, the stack stops as a crash loop.",
        DefaultValueFactory = _ => new RestartPolicy().MaxRestarts,
    };

    public static Command Create()
    {
        var command = new Command("up", "Start Backbone, Heads and Gateway locally, restart any that exits, and keep them running until Ctrl-C or SIGTERM.")
        {
            BasePort, DataDir, Timeout, LogDir, LogMaxBytes, MaxRestarts,
        };
        command.SetRun(async (parse, ct) =>
        {
            await using var stack = await StartAsync(parse, ct);
            PrintEndpoints(stack);
            AnsiConsole.MarkupLine($"[green]Graft stack ready[/]: gateway {stack.GatewayAddress.GetLeftPart(UriPartial.Authority)} (gRPC). `graft status` shows it; Ctrl-C stops it.");
            try
            {
                var message = await stack.Failure.WaitAsync(ct);
                throw new CliException(message, ExitCodes.Unreachable);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                AnsiConsole.MarkupLine("Stopping Gateway, Heads and Backbone...");
                return ExitCodes.Ok;
            }
        });
        return command;
    }

    /// <summary>Starts a stack with the options of <c>up</c> (the demo shares them), reporting progress.</summary>
    public static async Task<LocalStack> StartAsync(ParseResult parse, CancellationToken ct)
    {
        var settings = new StackSettings
        {
            BasePort = parse.GetValue(BasePort),
            DataDirectory = parse.GetValue(DataDir)!,
            StartTimeout = TimeSpan.FromSeconds(Math.Max(1, parse.GetValue(Timeout))),
            AdminToken = parse.GetValue(GlobalOptions.Token),
            LogDirectory = parse.GetValue(LogDir),
            LogMaxBytes = parse.GetValue(LogMaxBytes),
            Restarts = new RestartPolicy { MaxRestarts = parse.GetValue(MaxRestarts) },
        };
        if (settings.LogMaxBytes < 64 * 1024)
            throw new CliException($"--log-max-bytes {settings.LogMaxBytes}: give at least 65536 (64 KiB).", ExitCodes.Usage);
        if (settings.Restarts.MaxRestarts < 0)
            throw new CliException($"--max-restarts {settings.Restarts.MaxRestarts}: give 0 (never restart) or more.", ExitCodes.Usage);
        if (settings.BasePort is < 1 or > 65535 - 21)
            throw new CliException($"--base-port {settings.BasePort}: pick a port between 1 and {65535 - 21}.", ExitCodes.Usage);
        return await LocalStack.StartAsync(settings, line => Print(line, "grey"), line => Print(line, "yellow"), ct);
    }

    /// <summary>A progress or restart line: coloured on a terminal, unwrapped when captured (journald, log files, scripts).</summary>
    private static void Print(string line, string colour)
    {
        if (Console.IsOutputRedirected) Console.Out.WriteLine(line);
        else AnsiConsole.MarkupLine($"[{colour}]{Markup.Escape(line)}[/]");
    }

    public static void PrintEndpoints(LocalStack stack)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("service", "gRPC", "HTTP (/metrics, /healthz/ready)", "pid", "log");
        foreach (var s in stack.Services)
            table.AddRow(s.Service.ToString(), s.GrpcAddress.ToString(), s.HttpAddress.ToString(), s.ProcessId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-", Markup.Escape(LocalStack.LogPath(s)));
        AnsiConsole.Write(table);
        var http = stack.GatewayHttpAddress.GetLeftPart(UriPartial.Authority);
        AnsiConsole.MarkupLine($"Studio: [bold link]{http}/studio/[/]   REST/JSON: {http}/v1/...   API page: {http}/openapi   Open Inference Protocol: {http}/v2/...");
        AnsiConsole.MarkupLine($"Admin token in [bold]{Markup.Escape(stack.TokenFile)}[/] (mode 0600); `graft` reads it from there when run in this folder.");
    }
}

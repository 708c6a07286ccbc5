using System.CommandLine;
using Graft.Cli.Stack;
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

    public static Command Create()
    {
        var command = new Command("up", "Start Backbone, Heads and Gateway locally and keep them running until Ctrl-C.")
        {
            BasePort, DataDir, Timeout,
        };
        command.SetRun(async (parse, ct) =>
        {
            await using var stack = await StartAsync(parse, ct);
            PrintEndpoints(stack);
            AnsiConsole.MarkupLine($"[green]Graft stack ready[/]: gateway {stack.GatewayAddress.GetLeftPart(UriPartial.Authority)}. Press Ctrl-C to stop.");
            var exited = await stack.WaitForUnexpectedExitAsync(ct);
            // Ctrl-C in a terminal reaches the services too (same process group); they may exit before we notice it.
            if (exited is not null) await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None);
            if (exited is null || ct.IsCancellationRequested)
            {
                AnsiConsole.MarkupLine("Stopping Gateway, Heads and Backbone...");
                return ExitCodes.Ok;
            }
            throw new CliException(
                $"{exited.Service} stopped unexpectedly (exit code {exited.ExitCode}); stopping the others. Last lines of {LocalStack.LogPath(exited)}:\n{LocalStack.Tail(exited)}",
                ExitCodes.Unreachable);
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
        };
        if (settings.BasePort is < 1 or > 65535 - 21)
            throw new CliException($"--base-port {settings.BasePort}: pick a port between 1 and {65535 - 21}.", ExitCodes.Usage);
        return await LocalStack.StartAsync(settings, line => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]"), ct);
    }

    public static void PrintEndpoints(LocalStack stack)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("service", "gRPC", "HTTP (/metrics, /healthz/ready)", "pid", "log");
        foreach (var s in stack.Services)
            table.AddRow(s.Service.ToString(), s.GrpcAddress.ToString(), s.HttpAddress.ToString(), s.ProcessId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-", Markup.Escape(LocalStack.LogPath(s)));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"Admin token in [bold]{Markup.Escape(stack.TokenFile)}[/] (mode 0600); `graft` reads it from there when run in this folder.");
    }
}

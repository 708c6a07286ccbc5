using System.CommandLine;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary>Runs a verb's body and turns its failures into a message on stderr and an exit code.</summary>
public static class CommandRunner
{
    /// <summary>Errors go to stderr so that `--json` output on stdout stays parseable.</summary>
    public static IAnsiConsole Error { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Writes "error: ..." to stderr unwrapped (scripts and tests match on it), red on a terminal.</summary>
    public static void WriteError(string message)
    {
        if (Console.IsErrorRedirected) Console.Error.WriteLine($"error: {message}");
        else Error.MarkupLine($"[red]error:[/] {Markup.Escape(message)}");
    }

    public static void SetRun(this Command command, Func<ParseResult, CancellationToken, Task<int>> body)
        => command.SetAction(async (parse, ct) =>
        {
            try
            {
                return await body(parse, ct);
            }
            catch (CliException e)
            {
                WriteError(e.Message);
                return e.ExitCode;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                WriteError("interrupted");
                return ExitCodes.Interrupted;
            }
        });
}

using System.CommandLine;
using Graft.Cli.Commands;
using Spectre.Console;

// `graft`: the command-line client of the Graft Gateway, and the launcher of a local stack.
// Ctrl-C cancels the running verb; `up` and `demo` then get time to stop their services cleanly.
// Piped or captured output: wide tables rather than Spectre's 80-column default.
if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 160;
return await GraftCommands.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(60) });

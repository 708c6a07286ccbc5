using System.CommandLine;
using Graft.Cli.Commands;

// `graft`: the command-line client of the Graft Gateway, and the launcher of a local stack.
// Ctrl-C cancels the running verb; `up` and `demo` then get time to stop their services cleanly.
return await GraftCommands.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(60) });

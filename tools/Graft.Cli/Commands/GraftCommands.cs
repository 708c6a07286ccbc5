using System.CommandLine;

namespace Graft.Cli.Commands;

/// <summary>The <c>graft</c> command tree.</summary>
public static class GraftCommands
{
    public static RootCommand Build()
    {
        var root = new RootCommand("graft: transfer learning as a service. One frozen backbone, many small heads, one Gateway.\n" +
                                   "Start with `graft demo`, or `graft up` in one terminal and `graft train` / `graft predict` in another.")
        {
            GlobalOptions.Gateway,
            GlobalOptions.Token,
        };
        root.Subcommands.Add(UpCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(HeadsCommands.Create());
        root.Subcommands.Add(BackboneCommand.Create());
        return root;
    }
}

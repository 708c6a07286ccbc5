namespace Graft.Cli;

/// <summary>Process exit codes of <c>graft</c>; scripts can branch on them.</summary>
public static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Ok = 0;
    /// <summary>The Gateway refused or failed the request (bad argument, unknown head, ...), or the demo's heads did not beat their baselines.</summary>
    public const int Failed = 1;
    /// <summary>The command line or a local input (file, folder, CSV) is wrong.</summary>
    public const int Usage = 2;
    /// <summary>Nothing answers at the Gateway address, or a local service did not come up.</summary>
    public const int Unreachable = 3;
    /// <summary>The Gateway wants a (different) token.</summary>
    public const int Unauthorized = 4;
    /// <summary>Stopped by Ctrl-C.</summary>
    public const int Interrupted = 130;
}

/// <summary>A failure the user can act on: the message says what happened and what to do.</summary>
public sealed class CliException(string message, int exitCode = ExitCodes.Failed) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

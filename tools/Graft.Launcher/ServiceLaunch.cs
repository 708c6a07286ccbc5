namespace Graft.Launcher;

/// <summary>What to run for one service: its DLL, its ports, and the configuration it gets through the environment.</summary>
public sealed record ServiceLaunch(GraftService Service, string Dll, ServicePorts Ports)
{
    /// <summary><c>Graft__...</c> keys and any other variables the service process gets.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>When set, every line the service writes also goes to this file (created afresh at each start).</summary>
    public string? LogFile { get; init; }

    /// <summary>How many of the last output lines stay in memory for diagnostics.</summary>
    public int OutputLinesKept { get; init; } = 5000;
}

namespace Graft.Launcher;

/// <summary>What to run for one service: its DLL, its ports, and the configuration it gets through the environment.</summary>
public sealed record ServiceLaunch(GraftService Service, string Dll, ServicePorts Ports)
{
    /// <summary><c>Graft__...</c> keys and any other variables the service process gets.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>When set, every line the service writes also goes to this file, over all its runs. It rolls over to
    /// <c>LogFile.1</c> at half of <see cref="LogMaxBytes"/> (a new launcher keeps the previous one's log as <c>.1</c>).</summary>
    public string? LogFile { get; init; }

    /// <summary>Bound of <see cref="LogFile"/> and its <c>.1</c> together.</summary>
    public long LogMaxBytes { get; init; } = 32L * 1024 * 1024;

    /// <summary>How many of the last output lines stay in memory for diagnostics.</summary>
    public int OutputLinesKept { get; init; } = 5000;
}

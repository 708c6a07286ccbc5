namespace Graft.Reliability.Tests.Support;

/// <summary>The figures every test reports (requests served, failed, recovered, memory...), appended as they come to
/// <c>GRAFT_RELIABILITY_FIGURES</c> (default: <c>reliability-figures.txt</c> beside the test DLL), one run per file.</summary>
public static class FigureLog
{
    private static readonly Lock Gate = new();
    private static bool _started;

    public static string Path { get; } = Environment.GetEnvironmentVariable("GRAFT_RELIABILITY_FIGURES")
        ?? System.IO.Path.Combine(AppContext.BaseDirectory, "reliability-figures.txt");

    public static void Add(string line)
    {
        lock (Gate)
        {
            if (!_started)
            {
                File.WriteAllText(Path, "");
                _started = true;
            }
            File.AppendAllLines(Path, [line]);
        }
    }
}

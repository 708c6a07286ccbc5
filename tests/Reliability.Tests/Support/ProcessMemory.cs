using System.Globalization;

namespace Graft.Reliability.Tests.Support;

/// <summary>Resident memory of a process from <c>/proc/&lt;pid&gt;/status</c>: now (VmRSS) and its peak (VmHWM).
/// The peak catches a short-lived spike (a decompression bomb) that a before/after RSS pair would miss.</summary>
public readonly record struct ProcessMemory(long ResidentBytes, long PeakBytes)
{
    public static ProcessMemory Of(int pid)
    {
        long rss = 0, hwm = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                rss = Kilobytes(line);
            }
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                hwm = Kilobytes(line);
            }
        }
        return new ProcessMemory(rss, hwm);
    }

    public static ProcessMemory Of(Graft.Launcher.ServiceProcess service) =>
        Of(service.ProcessId ?? throw new InvalidOperationException($"{service.Service} is not running."));

    public static ProcessMemory Self() => Of(Environment.ProcessId);

    public double ResidentMiB => ResidentBytes / 1048576.0;

    public double PeakMiB => PeakBytes / 1048576.0;

    public override string ToString() => $"RSS {ResidentMiB:0} MiB (peak {PeakMiB:0} MiB)";

    // "VmRSS:	  123456 kB"
    private static long Kilobytes(string line) =>
        long.Parse(line.Split(' ', '\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
}

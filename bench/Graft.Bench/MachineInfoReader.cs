using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Graft.Bench;

/// <summary>What the run ran on: CPU model, cores, OS, .NET, date, load and the commit.</summary>
public static class MachineInfoReader
{
    public static MachineInfo Read(string repoRoot) => new(
        Cpu: ReadCpuModel(),
        Cores: Environment.ProcessorCount,
        Os: ReadOsName(),
        Dotnet: RuntimeInformation.FrameworkDescription,
        Date: DateTimeOffset.UtcNow,
        LoadAverageStart: LoadAverage(),
        Commit: GitCommit(repoRoot));

    /// <summary>The 1-minute load average from /proc/loadavg.</summary>
    public static double LoadAverage()
    {
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(first, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return double.NaN;
        }
    }

    private static string ReadCpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? RuntimeInformation.ProcessArchitecture.ToString();
        }
        catch (IOException)
        {
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    private static string ReadOsName()
    {
        try
        {
            var line = File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal));
            var kernel = File.Exists("/proc/sys/kernel/osrelease") ? $", Linux {File.ReadAllText("/proc/sys/kernel/osrelease").Trim()}" : "";
            return line is null ? RuntimeInformation.OSDescription : $"{line.Split('=', 2)[1].Trim('"')}{kernel}";
        }
        catch (IOException)
        {
            return RuntimeInformation.OSDescription;
        }
    }

    private static string GitCommit(string repoRoot)
    {
        try
        {
            var start = new ProcessStartInfo("git", ["-C", repoRoot, "rev-parse", "--short", "HEAD"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(start)!;
            var sha = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 ? sha : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }
}

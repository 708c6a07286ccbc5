namespace Graft.Bench.Speed;

/// <summary>CPU time of one process and of each of its threads, read from /proc: which threads burn the CPU (spinning
/// thread-pool workers, ONNX Runtime's intra-op threads, the socket engine...). Threads are grouped by name
/// (<c>comm</c>, 15 characters: ".NET TP Worker", ".NET Sockets", "graft-batch"...).</summary>
public sealed record ThreadCpuSnapshot(double ProcessCpuMs, Dictionary<int, (string Name, double CpuMs)> Threads, long VoluntarySwitches, long InvoluntarySwitches)
{
    private static readonly double TickMs = 1000.0 / 100; // USER_HZ is 100 on Linux

    /// <summary>Reads the process and its threads now; null when the process is gone.</summary>
    public static ThreadCpuSnapshot? Read(int pid)
    {
        try
        {
            var processCpu = StatCpuMs(File.ReadAllText($"/proc/{pid}/stat"));
            var threads = new Dictionary<int, (string, double)>();
            long voluntary = 0, involuntary = 0;
            foreach (var dir in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    var tid = int.Parse(Path.GetFileName(dir));
                    var name = File.ReadAllText(Path.Combine(dir, "comm")).Trim();
                    // schedstat: nanoseconds on CPU, precise where stat's ticks are 10 ms.
                    var ns = long.Parse(File.ReadAllText(Path.Combine(dir, "schedstat")).Split(' ')[0]);
                    threads[tid] = (name, ns / 1e6);
                    foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                    {
                        if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal)) voluntary += long.Parse(line.Split(':')[1]);
                        else if (line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal)) involuntary += long.Parse(line.Split(':')[1]);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
                {
                    // The thread ended between the listing and the read.
                }
            }
            return new ThreadCpuSnapshot(processCpu, threads, voluntary, involuntary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>CPU ms per thread name between <paramref name="before"/> and this snapshot (threads born in between
    /// count from zero; threads that ended in between are lost here but not in <see cref="ProcessCpuMs"/>).</summary>
    public Dictionary<string, double> ByNameSince(ThreadCpuSnapshot before)
    {
        var result = new Dictionary<string, double>();
        foreach (var (tid, (name, ms)) in Threads)
        {
            var start = before.Threads.TryGetValue(tid, out var b) ? b.CpuMs : 0;
            result[name] = result.GetValueOrDefault(name) + ms - start;
        }
        return result;
    }

    private static double StatCpuMs(string stat)
    {
        // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) * TickMs;
    }
}

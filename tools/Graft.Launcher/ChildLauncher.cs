using System.Collections.Concurrent;
using System.Diagnostics;

namespace Graft.Launcher;

/// <summary>Starts every child process from one dedicated thread that lives as long as this process: Linux sends
/// the parent-death signal (<c>setpriv --pdeathsig</c>) when the *thread* that forked a child ends, so a pool thread
/// would take its children down with it whenever the pool retires it.</summary>
internal static class ChildLauncher
{
    private static readonly BlockingCollection<(Process Process, TaskCompletionSource Started)> Requests = [];

    static ChildLauncher()
    {
        new Thread(() =>
        {
            foreach (var (process, started) in Requests.GetConsumingEnumerable())
            {
                try
                {
                    if (!process.Start())
                    {
                        throw new InvalidOperationException($"Could not start {process.StartInfo.FileName}.");
                    }
                    started.SetResult();
                }
                catch (Exception e)
                {
                    started.SetException(e);
                }
            }
        })
        { IsBackground = true, Name = "graft-launcher" }.Start();
    }

    public static void Start(Process process)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Requests.Add((process, started));
        // Bounded: a start that never returns must fail the caller with a reason, not hang it.
        if (!started.Task.Wait(TimeSpan.FromSeconds(60)))
        {
            throw new TimeoutException($"Starting {process.StartInfo.FileName} did not return within 60 s.");
        }
    }
}

namespace Graft.Launcher;

/// <summary>How a <see cref="Supervisor"/> restarts a service that exits on its own.</summary>
public sealed record RestartPolicy
{
    /// <summary>Restarts tried after early exits in a row before the stack is given up as a crash loop (0: never restart).</summary>
    public int MaxRestarts { get; init; } = 5;

    /// <summary>Delay before the first restart; doubled after each further early exit, up to <see cref="MaxDelay"/>.</summary>
    public TimeSpan FirstDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A run shorter than this is an early exit (counts towards a crash loop); a longer one resets the count.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Backoff before the restart that follows early exit number <paramref name="earlyExits"/> (1-based).</summary>
    public TimeSpan DelayFor(int earlyExits)
    {
        var factor = Math.Pow(2, Math.Clamp(earlyExits - 1, 0, 30));
        return TimeSpan.FromTicks((long)Math.Min(MaxDelay.Ticks, FirstDelay.Ticks * factor));
    }
}

/// <summary>What a supervised service is doing.</summary>
public enum ServiceState
{
    Starting,
    Serving,
    Restarting,
    Stopped,
    Failed,
}

/// <summary>One service under a <see cref="Supervisor"/>: its process and its history.</summary>
public sealed class SupervisedService(ServiceProcess process)
{
    public ServiceProcess Process { get; } = process;

    public ServiceState State { get; internal set; } = ServiceState.Starting;

    /// <summary>When the current run started (uptime is measured from here).</summary>
    public DateTimeOffset StartedAt { get; internal set; }

    /// <summary>Restarts since the supervisor started it.</summary>
    public int Restarts { get; internal set; }

    public int? LastExitCode { get; internal set; }

    internal int EarlyExits { get; set; }

    /// <summary>Completes when the service first reports SERVING.</summary>
    public Task FirstServed => ServedOnce.Task;

    internal TaskCompletionSource ServedOnce { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>Keeps services running: a run that ends without being asked to (<see cref="ServiceExit.Requested"/> false)
/// is followed by a restart on the same ports after an exponential backoff; <see cref="RestartPolicy.MaxRestarts"/>
/// early exits in a row and one more is a crash loop, reported through <see cref="Failure"/> instead of retried.
/// Each restart is announced with the exit code and the service's last output lines.</summary>
public sealed class Supervisor
{
    private readonly RestartPolicy _policy;
    private readonly Action<string> _info;
    private readonly Action<string> _warn;
    private readonly TaskCompletionSource<string> _failure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();

    /// <param name="services">In start order.</param>
    /// <param name="info">Progress lines (a service is serving again).</param>
    /// <param name="warn">Restart announcements.</param>
    public Supervisor(IEnumerable<ServiceProcess> services, RestartPolicy policy, Action<string> info, Action<string> warn)
    {
        _policy = policy;
        _info = info;
        _warn = warn;
        Services = services.Select(s => new SupervisedService(s)).ToList();
        foreach (var service in Services)
        {
            service.Process.Exited += exit =>
            {
                if (!exit.Requested && !_stopping.IsCancellationRequested)
                {
                    _ = OnUnexpectedExitAsync(service, exit);
                }
            };
        }
    }

    public IReadOnlyList<SupervisedService> Services { get; }

    /// <summary>Completes with a message when a service is in a crash loop (or cannot be restarted) and the supervisor gave up.</summary>
    public Task<string> Failure => _failure.Task;

    /// <summary>Raised after any change of a service's state, pid or counters.</summary>
    public event Action? Changed;

    /// <summary>Starts every service (they must not be running).</summary>
    public void Start()
    {
        foreach (var service in Services)
        {
            Launch(service);
        }
    }

    /// <summary>Completes once every service has reported SERVING (restarts in between are fine).</summary>
    public Task AllServedAsync() => Task.WhenAll(Services.Select(s => s.ServedOnce.Task));

    /// <summary>No more restarts: the services are about to be stopped on purpose.</summary>
    public void Stop()
    {
        _stopping.Cancel();
        foreach (var service in Services.Where(s => s.State != ServiceState.Failed))
        {
            service.State = ServiceState.Stopped;
        }
        Changed?.Invoke();
    }

    /// <summary>The last lines of a service's latest run, without stack-frame lines (they push the exception's own
    /// message out of view and tell an operator nothing).</summary>
    public static string Tail(ServiceProcess process, int lines = 12)
    {
        var output = process.Output;
        var lastRun = output.Count == 0 ? "" : output[^1][..(output[^1].IndexOf(']', StringComparison.Ordinal) + 1)];
        var useful = output
            .Where(l => l.StartsWith(lastRun, StringComparison.Ordinal))
            .Select(l => l[lastRun.Length..].TrimStart(' '))
            .Where(l => !l.StartsWith("at ", StringComparison.Ordinal) && !l.StartsWith("--- End of", StringComparison.Ordinal) && l != "process exited")
            .TakeLast(lines)
            .ToList();
        return useful.Count == 0 ? "(no output)" : string.Join('\n', useful);
    }

    private void Launch(SupervisedService service)
    {
        service.Process.Start();
        service.StartedAt = DateTimeOffset.UtcNow;
        service.State = ServiceState.Starting;
        Changed?.Invoke();
        _ = WatchServingAsync(service, service.Process.ProcessId);
    }

    private async Task WatchServingAsync(SupervisedService service, int? pid)
    {
        try
        {
            await service.Process.WaitServingAsync(TimeSpan.FromHours(1), _stopping.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or ServiceStartException)
        {
            return; // Stopping, or this run exited while starting (its exit is handled on its own).
        }
        if (service.Process.ProcessId != pid || _stopping.IsCancellationRequested)
        {
            return;
        }
        service.State = ServiceState.Serving;
        Changed?.Invoke();
        if (service.Restarts > 0)
        {
            _info($"{service.Process.Service} is SERVING again (pid {pid}, {Format(DateTimeOffset.UtcNow - service.StartedAt)} after its restart)");
        }
        service.ServedOnce.TrySetResult();
    }

    private async Task OnUnexpectedExitAsync(SupervisedService service, ServiceExit exit)
    {
        var stop = _stopping.Token;
        try
        {
            // Ctrl-C in a terminal reaches the services too (same process group): give the host's own handler a
            // moment to begin the ordered stop before treating the exit as a crash.
            await Task.Delay(TimeSpan.FromMilliseconds(500), stop);
            var ran = DateTimeOffset.UtcNow - service.StartedAt;
            service.LastExitCode = exit.ExitCode;
            service.EarlyExits = ran < _policy.StableAfter ? service.EarlyExits + 1 : 1;
            var tail = Tail(service.Process);
            var name = service.Process.Service;
            if (service.EarlyExits > _policy.MaxRestarts)
            {
                service.State = ServiceState.Failed;
                Changed?.Invoke();
                _failure.TrySetResult(
                    $"{name} is in a crash loop: it exited {service.EarlyExits} times in a row within {_policy.StableAfter.TotalSeconds:0} s of starting " +
                    $"(last exit code {exit.ExitCode}); stopping the stack. Fix the cause and start it again. Its last lines:\n{tail}");
                return;
            }
            var delay = _policy.DelayFor(service.EarlyExits);
            service.State = ServiceState.Restarting;
            Changed?.Invoke();
            _warn($"{name} (run {exit.Run}) exited with code {exit.ExitCode} after {Format(ran)}; restarting in {Format(delay)} " +
                  $"(restart {service.Restarts + 1}; early exit {service.EarlyExits} of at most {_policy.MaxRestarts + 1}). Its last lines:\n{tail}");
            service.Process.Note($"---- launcher: {name} exited with code {exit.ExitCode}; restarting in {Format(delay)} ----");
            await Task.Delay(delay, stop);
            service.Restarts++;
            Launch(service);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The stack is stopping.
        }
        catch (Exception e)
        {
            service.State = ServiceState.Failed;
            Changed?.Invoke();
            _failure.TrySetResult($"Restarting {service.Process.Service} failed: {e.Message}; stopping the stack.");
        }
    }

    private static string Format(TimeSpan t) => t.TotalSeconds < 10 ? $"{t.TotalSeconds:0.0} s" : $"{t.TotalSeconds:0} s";
}

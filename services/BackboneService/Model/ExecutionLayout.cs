namespace Graft.Backbone.Model;

/// <summary>How the backbone uses the CPU: <see cref="Sessions"/> ONNX Runtime sessions run batches in parallel, each
/// with <see cref="IntraOpThreads"/> threads, so that <c>Sessions × IntraOpThreads</c> equals the cores the process
/// may use. Never ONNX Runtime's own default, which counts the host's cores, not the container's.</summary>
/// <param name="Sessions">Parallel sessions (each holds its own copy of the weights and is fed by its own batcher worker).</param>
/// <param name="IntraOpThreads">Threads inside one run of one session.</param>
/// <param name="AllowSpinning">Whether intra-op threads spin between runs (irrelevant with one thread per session).</param>
/// <param name="Cores">Cores the process may use (<see cref="Environment.ProcessorCount"/>: affinity and cgroup CPU limits included).</param>
public sealed record ExecutionLayout(int Sessions, int IntraOpThreads, bool AllowSpinning, int Cores)
{
    /// <summary>Whether <see cref="Sessions"/> was chosen here rather than configured (a GPU then gets one session).</summary>
    public bool AutoSessions { get; init; }

    /// <summary>Largest number of sessions auto mode chooses: each holds a full copy of the weights (about 45 MB for ResNet18).</summary>
    public const int MaxAutoSessions = 4;

    /// <summary>Threads per session auto mode aims for: below it one session uses every core; above it parallel
    /// sessions scale better than more threads in one run.</summary>
    public const int AutoThreadsPerSession = 4;

    /// <summary>Resolves configured values (0 = auto) against the cores the process may use.
    /// Auto: sessions of up to <see cref="AutoThreadsPerSession"/> threads, at most <see cref="MaxAutoSessions"/> of
    /// them, the cores shared out evenly (2 cores: 1 x 2; 8: 2 x 4; 32: 4 x 8). One session over every core of a small
    /// host gives a lone request all of them: on the quiet 2-core bench host 1 x 2 and 2 x 1 reached the same batch-16
    /// throughput (90 and 87 img/s) but 1 x 2 ran batch 1 in half the time (12 against 23 ms); ONNX Runtime's own
    /// default reached 46 img/s. See bench/RESULTS.md, "the limit".</summary>
    public static ExecutionLayout Resolve(int sessions, int intraOpThreads, bool allowSpinning, int cores)
    {
        cores = Math.Max(1, cores);
        var autoSessions = sessions <= 0;
        if (sessions <= 0 && intraOpThreads <= 0)
        {
            sessions = Math.Clamp((cores + AutoThreadsPerSession - 1) / AutoThreadsPerSession, 1, MaxAutoSessions);
            intraOpThreads = Math.Max(1, cores / sessions);
        }
        else if (sessions <= 0)
        {
            sessions = Math.Max(1, cores / intraOpThreads);
        }
        else if (intraOpThreads <= 0)
        {
            intraOpThreads = Math.Max(1, cores / sessions);
        }
        return new ExecutionLayout(sessions, intraOpThreads, allowSpinning, cores) { AutoSessions = autoSessions };
    }

    /// <summary>The layout for the process's cores.</summary>
    public static ExecutionLayout Resolve(BackboneOptions options) =>
        Resolve(options.Sessions, options.IntraOpThreads, options.AllowSpinning, Environment.ProcessorCount);

    /// <summary>E.g. "2 sessions x 1 intra-op thread on 2 cores, no spinning".</summary>
    public override string ToString() =>
        $"{Sessions} session{(Sessions == 1 ? "" : "s")} x {IntraOpThreads} intra-op thread{(IntraOpThreads == 1 ? "" : "s")} on {Cores} core{(Cores == 1 ? "" : "s")}, {(AllowSpinning ? "spinning" : "no spinning")}";
}

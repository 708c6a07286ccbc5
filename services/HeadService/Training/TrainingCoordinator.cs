using System.Diagnostics;
using Graft.Heads.Registry;
using Microsoft.Extensions.Logging;

namespace Graft.Heads.Training;

/// <summary>What a job tells its caller while it waits, trains and publishes.</summary>
public abstract record JobEvent
{
    public sealed record Queued(int JobsAhead) : JobEvent;
    public sealed record Epoch(EpochReport Report) : JobEvent;
}

/// <summary>Runs one validated training job end to end: queue → train (dedicated thread) → publish.
/// A cancelled job publishes nothing: cancellation is checked between batches and once more just before publishing.</summary>
public sealed partial class TrainingCoordinator(
    TrainingScheduler scheduler, HeadTrainer trainer, HeadRegistry registry, HeadsTelemetry telemetry, ILogger<TrainingCoordinator> logger)
{
    public async Task<HeadManifest> RunAsync(TrainingSettings settings, TrainingSet data, Action<JobEvent> onEvent, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var outcome = "failed";
        try
        {
            var manifest = await scheduler.RunAsync(ct =>
            {
                LogStarted(logger, settings.Name, settings.KindName, data.Rows, data.Dimension);
                var trained = trainer.Train(settings, data, new Reporter(e => onEvent(new JobEvent.Epoch(e))), ct);
                ct.ThrowIfCancellationRequested();
                return registry.Publish(trained.Manifest, SafeTensors.Serialize(trained.Weights));
            }, position => onEvent(new JobEvent.Queued(position)), cancellationToken);
            outcome = "published";
            return manifest;
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled";
            LogCancelled(logger, settings.Name);
            throw;
        }
        catch (HeadException)
        {
            outcome = "rejected";
            throw;
        }
        finally
        {
            telemetry.JobFinished(settings.KindName, outcome, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>Calls back synchronously on the training thread (Progress&lt;T&gt; would post to the thread pool and reorder).</summary>
    private sealed class Reporter(Action<EpochReport> report) : IProgress<EpochReport>
    {
        public void Report(EpochReport value) => report(value);
    }

    [LoggerMessage(EventId = 3300, Level = LogLevel.Information, Message = "Training head {Name} ({Kind}) on {Rows} rows of {Dimension} features")]
    private static partial void LogStarted(ILogger logger, string name, string kind, int rows, int dimension);

    [LoggerMessage(EventId = 3301, Level = LogLevel.Information, Message = "Training of head {Name} was cancelled; nothing was published")]
    private static partial void LogCancelled(ILogger logger, string name);
}

using System.Diagnostics;
using Graft.Heads.Registry;
using Graft.Heads.Tails;
using Graft.V1;
using Microsoft.Extensions.Logging;

namespace Graft.Heads.Training;

/// <summary>What a job tells its caller while it waits, trains and publishes.</summary>
public abstract record JobEvent
{
    public sealed record Queued(int JobsAhead) : JobEvent;
    public sealed record Epoch(EpochReport Report) : JobEvent;
    /// <summary>A line for people about a decision taken (TrainProgress.message).</summary>
    public sealed record Note(string Message, int EpochsTotal) : JobEvent;
}

/// <summary>Runs one validated training job end to end: queue → train (dedicated thread) → publish.
/// A cancelled job publishes nothing: cancellation is checked between batches and once more just before publishing.</summary>
public sealed partial class TrainingCoordinator(
    TrainingScheduler scheduler, HeadTrainer trainer, HeadRegistry registry, HeadsTelemetry telemetry, ILogger<TrainingCoordinator> logger)
{
    public Task<HeadManifest> RunAsync(TrainingSettings settings, TrainingSet data, Action<JobEvent> onEvent, CancellationToken cancellationToken)
        => RunAsync(settings, data, null, onEvent, cancellationToken);

    /// <summary>Queues, trains and publishes; <paramref name="tail"/> is the backbone tail of a fine-tuning depth
    /// (the caller owns it and disposes it after the returned task has finished).</summary>
    public async Task<HeadManifest> RunAsync(TrainingSettings settings, TrainingSet data, ReceivedTail? tail, Action<JobEvent> onEvent, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var outcome = "failed";
        try
        {
            var manifest = await scheduler.RunAsync(ct =>
            {
                LogStarted(logger, settings.Name, settings.Kind.Name(), data.Rows, data.Dimension);
                if (tail is not null)
                {
                    var h = settings.Hyperparameters;
                    var parameters = tail.Module.parameters().Sum(p => p.numel());
                    LogFineTuning(logger, settings.Name, tail.CutPoint, parameters, h.TailLearningRate);
                    onEvent(new JobEvent.Note(
                        $"Fine-tuning the backbone from {tail.CutPoint} ({parameters / 1e6:F1} M pretrained weights, learning rate {h.TailLearningRate:G3}; batch-norm statistics frozen) " +
                        $"under a new {(h.HiddenSizes.Count == 0 ? "linear layer" : "MLP")} (learning rate {h.LearningRate:G3}), on {data.Rows} rows.", h.Epochs));
                }
                var trained = trainer.Train(settings, data, tail, new Reporter(e => onEvent(new JobEvent.Epoch(e))), ct);
                ct.ThrowIfCancellationRequested();
                return Publish(settings.Name, trained);
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
            telemetry.JobFinished(settings.Kind.Name(), outcome, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>Publishes a trained head. A registry that cannot be written (volume full, read-only, no permission) is the
    /// operator's to fix, so it becomes a refusal naming the cause; the publish has already removed its temporary folder,
    /// so nothing half-written stays. The path and exception text go to the log only.</summary>
    private HeadManifest Publish(string name, TrainedHead trained)
    {
        try
        {
            return registry.Publish(trained.Manifest, SafeTensors.Serialize(trained.Weights), tail: trained.Tail);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogPublishFailed(logger, e, name);
            // On Unix an IOException's HResult is the errno: ENOSPC 28, EROFS 30, EDQUOT 122.
            var (kind, cause, remedy) = e switch
            {
                UnauthorizedAccessException => (HeadErrorKind.FailedPrecondition, "HeadService may not write the registry folder (permission denied)", "give it write access"),
                { HResult: 28 or 122 } => (HeadErrorKind.ResourceExhausted, "the registry volume is full (no space left on device)", "free space on it"),
                { HResult: 30 } => (HeadErrorKind.FailedPrecondition, "the registry is on a read-only file system", "mount it read-write"),
                _ => (HeadErrorKind.FailedPrecondition, "writing the registry failed (the HeadService log has the error)", "check the registry volume"),
            };
            throw new HeadException(kind, $"Head '{name}' was trained but not published: {cause}. Nothing was written; {remedy}, then train again.");
        }
    }

    /// <summary>Calls back synchronously on the training thread (Progress&lt;T&gt; would post to the thread pool and reorder).</summary>
    private sealed class Reporter(Action<EpochReport> report) : IProgress<EpochReport>
    {
        public void Report(EpochReport value) => report(value);
    }

    [LoggerMessage(EventId = 3300, Level = LogLevel.Information, Message = "Training head {Name} ({Kind}) on {Rows} rows of {Dimension} features")]
    private static partial void LogStarted(ILogger logger, string name, string kind, int rows, int dimension);

    [LoggerMessage(EventId = 3400, Level = LogLevel.Information, Message = "Head {Name} fine-tunes the backbone from {CutPoint} ({Parameters} weights, learning rate {TailLearningRate})")]
    private static partial void LogFineTuning(ILogger logger, string name, string cutPoint, long parameters, double tailLearningRate);

    [LoggerMessage(EventId = 3301, Level = LogLevel.Information, Message = "Training of head {Name} was cancelled; nothing was published")]
    private static partial void LogCancelled(ILogger logger, string name);

    [LoggerMessage(EventId = 3302, Level = LogLevel.Error, Message = "Head {Name} was trained but could not be published: the registry cannot be written")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception, string name);
}

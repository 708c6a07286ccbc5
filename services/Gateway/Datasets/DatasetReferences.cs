using Graft.Gateway.Downstream;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Datasets;

/// <summary>Which training sets head versions still name (HeadService's registry is the one record of that), and the
/// release of the others: after a delete, after a training HeadService refused, and once at start-up.</summary>
public sealed partial class DatasetReferences(DatasetStore store, HeadsDownstream heads, ILogger<DatasetReferences> logger)
{
    /// <summary>Every training-set id some version of some head names.</summary>
    public async Task<IReadOnlySet<string>> ReferencedAsync(CancellationToken cancellationToken)
    {
        var list = await heads.ListAsync(new ListHeadsRequest(), cancellationToken);
        return list.Heads.SelectMany(h => h.Versions).Select(v => v.Spec?.Dataset ?? "").Where(d => d.Length > 0).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Releases the training sets of versions just deleted (those no other version names) and collects the
    /// images nothing names any more. Best effort: the delete already happened; a failure here is logged and the
    /// start-up collection finishes the job.</summary>
    public async Task ReleaseAsync(IEnumerable<string> datasets, CancellationToken cancellationToken)
    {
        var candidates = datasets.Where(d => d.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        if (!store.Enabled || candidates.Count == 0)
        {
            return;
        }
        try
        {
            var referenced = await ReferencedAsync(cancellationToken);
            await store.CollectAsync(candidates, referenced, orphanAge: null, cancellationToken);
        }
        catch (Exception e) when (e is RpcException or IOException or UnauthorizedAccessException or OperationCanceledException)
        {
            LogReleaseFailed(logger, string.Join(", ", candidates), e.Message);
        }
    }

    [LoggerMessage(EventId = 4510, Level = LogLevel.Warning,
        Message = "Training sets {Datasets} not released now ({Reason}); the next start-up collection releases them")]
    private static partial void LogReleaseFailed(ILogger logger, string datasets, string reason);
}

/// <summary>At start-up, once HeadService answers: removes training sets no version names (older than
/// <see cref="DatasetOptions.OrphanAge"/>) and the images nothing names.</summary>
public sealed partial class DatasetCollector(
    DatasetStore store, IServiceProvider services, IOptions<DatasetOptions> options, ILogger<DatasetCollector> logger) : BackgroundService
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!store.Enabled)
        {
            return;
        }
        var references = ActivatorUtilities.CreateInstance<DatasetReferences>(services);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var referenced = await references.ReferencedAsync(stoppingToken);
                var result = await store.CollectAsync([], referenced, options.Value.OrphanAge, stoppingToken);
                var (images, bytes) = store.Usage();
                LogStartupCollection(logger, store.Root!, result.Datasets, result.Images, images, bytes);
                return;
            }
            catch (RpcException e)
            {
                // HeadService not up yet: its registry is the record of what is still in use, so wait for it.
                LogWaiting(logger, e.Status.Detail);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                LogCollectFailed(logger, e.Message);
                return;
            }
            await Task.Delay(RetryDelay, stoppingToken);
        }
    }

    [LoggerMessage(EventId = 4511, Level = LogLevel.Information,
        Message = "Training-set store {Root}: start-up collection removed {Datasets} training sets and {Removed} images; {Images} images ({Bytes} bytes) kept")]
    private static partial void LogStartupCollection(ILogger logger, string root, int datasets, int removed, int images, long bytes);

    [LoggerMessage(EventId = 4512, Level = LogLevel.Debug, Message = "Training-set collection waits for HeadService: {Reason}")]
    private static partial void LogWaiting(ILogger logger, string reason);

    [LoggerMessage(EventId = 4513, Level = LogLevel.Warning, Message = "Training-set start-up collection failed: {Reason}")]
    private static partial void LogCollectFailed(ILogger logger, string reason);
}

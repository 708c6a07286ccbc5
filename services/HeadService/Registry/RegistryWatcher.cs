using Graft.ServiceDefaults;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Heads.Registry;

/// <summary>Keeps the registry snapshot fresh: a FileSystemWatcher reacts within milliseconds on local disks,
/// and a periodic full rescan catches what watchers miss on network volumes (NFS, SMB, CephFS).</summary>
public sealed partial class RegistryWatcher(
    HeadRegistry registry, IOptions<HeadOptions> options, ReadinessGate readiness, ILogger<RegistryWatcher> logger) : BackgroundService
{
    private readonly SemaphoreSlim _signal = new(0, 1);
    private FileSystemWatcher? _watcher;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        registry.Rescan();
        readiness.MarkReady();
        StartWatcher();
        var interval = TimeSpan.FromSeconds(options.Value.RescanIntervalSeconds);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await _signal.WaitAsync(interval, stoppingToken))
                {
                    // Let a burst of events (a publish writes several entries) settle into one scan.
                    await Task.Delay(50, stoppingToken);
                }
                registry.Rescan();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                LogScanFailed(logger, e);
            }
        }
    }

    private void StartWatcher()
    {
        try
        {
            _watcher = new FileSystemWatcher(registry.Root)
            {
                IncludeSubdirectories = true,
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size,
            };
            _watcher.Created += (_, _) => Signal();
            _watcher.Deleted += (_, _) => Signal();
            _watcher.Renamed += (_, _) => Signal();
            _watcher.Changed += (_, _) => Signal();
            _watcher.Error += (_, e) => { LogWatcherError(logger, e.GetException()); Signal(); };
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception e) when (e is IOException or ArgumentException or PlatformNotSupportedException)
        {
            // e.g. the inotify instance limit; the periodic rescan still delivers changes.
            LogWatcherError(logger, e);
            _watcher?.Dispose();
            _watcher = null;
        }
    }

    private void Signal()
    {
        if (_signal.CurrentCount == 0)
        {
            try
            {
                _signal.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already signalled.
            }
        }
    }

    public override void Dispose()
    {
        _watcher?.Dispose();
        _signal.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 3110, Level = LogLevel.Warning, Message = "Registry file watcher failed; relying on the periodic rescan")]
    private static partial void LogWatcherError(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3111, Level = LogLevel.Warning, Message = "Registry rescan failed; retrying at the next interval")]
    private static partial void LogScanFailed(ILogger logger, Exception exception);
}

using System.Collections.Concurrent;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using Graft.Backbone.Services;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using Microsoft.Extensions.Logging;

namespace Graft.Backbone.Tests.Infrastructure;

/// <summary>Hosts the real BackboneService (real ResNet18, real ONNX Runtime) in-process; gRPC goes over the test
/// server's handler.</summary>
public sealed class BackboneFactory(IReadOnlyDictionary<string, string?>? settings = null) : WebApplicationFactory<BackboneGrpcService>
{
    public LogSink Logs { get; } = new();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        // Device stays "auto" unless a test says otherwise: here that exercises the CUDA → CPU fallback.
        builder.UseSetting("Graft:Backbone:IntraOpThreads", "2");
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.UseSetting(key, value);
        }
        builder.ConfigureLogging(logging => logging.AddProvider(Logs));
        // Tests read counters right after acting; a cached scrape would show the previous values.
        builder.ConfigureTestServices(services =>
            services.Configure<PrometheusAspNetCoreOptions>(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
    }

    /// <summary>A client over the in-process server, without client-side message limits (the server's apply).</summary>
    public V1.Backbone.BackboneClient CreateBackboneClient() => new(CreateChannel());

    public GrpcChannel CreateChannel() => GrpcChannel.ForAddress(Server.BaseAddress, new GrpcChannelOptions
    {
        HttpHandler = Server.CreateHandler(),
        MaxReceiveMessageSize = null,
        MaxSendMessageSize = null,
    });

    private HostMeterTotals? _meterTotals;

    /// <summary>Total of a counter (Prometheus name, e.g. <c>graft_backbone_inferences_total</c>) recorded by
    /// <em>this</em> host since the first read. Several hosts share this test process, and OpenTelemetry's
    /// process-wide exporter merges same-named instruments across them, so the /metrics text of one host can show
    /// another's counts; a listener scoped to this host's <see cref="System.Diagnostics.Metrics.IMeterFactory"/>
    /// cannot. (The real /metrics exposition is checked against a separate process in <c>RealSocketTests</c>.)</summary>
    public Task<double> ReadMetricAsync(string series)
    {
        _meterTotals ??= new HostMeterTotals(Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        return Task.FromResult(_meterTotals.Read(series));
    }

    protected override void Dispose(bool disposing)
    {
        _meterTotals?.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Accumulates the counters of the meters one <see cref="System.Diagnostics.Metrics.IMeterFactory"/> created.</summary>
internal sealed class HostMeterTotals : IDisposable
{
    private readonly System.Diagnostics.Metrics.MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, double> _totals = new();

    public HostMeterTotals(System.Diagnostics.Metrics.IMeterFactory scope)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, scope)) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => Add(instrument.Name, value));
        _listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => Add(instrument.Name, value));
        _listener.SetMeasurementEventCallback<double>((instrument, value, _, _) => Add(instrument.Name, value));
        _listener.Start();
    }

    /// <summary>Prometheus counter name → instrument name: <c>graft_backbone_cache_hits_total</c> → <c>graft.backbone.cache.hits</c>.</summary>
    public double Read(string series)
    {
        var name = (series.EndsWith("_total", StringComparison.Ordinal) ? series[..^"_total".Length] : series).Replace('_', '.');
        return _totals.TryGetValue(name, out var total) ? total : 0;
    }

    private void Add(string instrument, double value) => _totals.AddOrUpdate(instrument, value, (_, total) => total + value);

    public void Dispose() => _listener.Dispose();
}

/// <summary>Collects log entries so tests can assert on logged warnings by event id.</summary>
public sealed class LogSink : ILoggerProvider
{
    public ConcurrentQueue<(string Category, LogLevel Level, EventId EventId, string Message)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new SinkLogger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class SinkLogger(LogSink sink, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) sink.Entries.Enqueue((category, logLevel, eventId, formatter(state, exception)));
        }
    }
}

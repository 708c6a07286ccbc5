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

    /// <summary>Sum of a Prometheus series (all label sets) from the service's /metrics endpoint.</summary>
    public async Task<double> ReadMetricAsync(string series)
    {
        using var http = CreateClient();
        var text = await http.GetStringAsync("/metrics");
        return Metrics.Sum(text, series);
    }
}

/// <summary>Reads Prometheus text exposition.</summary>
public static partial class Metrics
{
    public static double Sum(string exposition, string series)
    {
        var total = 0.0;
        foreach (Match m in SeriesLine().Matches(exposition))
        {
            if (m.Groups["name"].Value == series) total += double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture);
        }
        return total;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(?<value>[-+0-9.eE]+|NaN)", RegexOptions.Multiline)]
    private static partial Regex SeriesLine();
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

/// <summary>Where the committed samples live.</summary>
public static class Samples
{
    public static string RepositoryRoot { get; } = typeof(Samples).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepositoryRoot").Value!;

    public static string Fashion => Path.Combine(RepositoryRoot, "samples", "fashion");

    /// <summary>(class, file) pairs of a split ("train" or "test"), in a stable order.</summary>
    public static IReadOnlyList<(string Label, string Path)> Split(string split) =>
        Directory.GetDirectories(Path.Combine(Fashion, split)).Order(StringComparer.Ordinal)
            .SelectMany(dir => Directory.GetFiles(dir, "*.png").Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(dir), f)))
            .ToList();
}

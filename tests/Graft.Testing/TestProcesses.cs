using Graft.Launcher;

namespace Graft.Testing;

/// <summary>Services for end-to-end tests, run by the shared launcher (<see cref="ServiceProcess"/>) from the DLLs
/// this harness built, on free loopback ports.</summary>
public static class TestProcesses
{
    /// <summary>A service (not started) on two free ports, with <paramref name="environment"/> on top of the test defaults.</summary>
    public static ServiceProcess Create(GraftService service, IReadOnlyDictionary<string, string> environment)
        => new(new ServiceLaunch(service, RepositoryLayout.ServiceDll(service), PortPlan.FreeService()) { Environment = WithDefaults(environment) });

    /// <summary>The environment every test service gets: production settings, so tests see what users see.</summary>
    public static IReadOnlyDictionary<string, string> WithDefaults(IReadOnlyDictionary<string, string> environment)
    {
        var all = new Dictionary<string, string>(environment) { ["ASPNETCORE_ENVIRONMENT"] = "Production" };
        return all;
    }

    /// <summary>Reads the Prometheus text on <c>/metrics</c>. With <paramref name="generatedAfter"/>, waits for a
    /// snapshot the exporter made at or after that moment (it caches scrapes briefly and says when it made one in
    /// <c>Last-Modified</c>), so every counter change finished before that moment is in it.</summary>
    public static async Task<PrometheusText> ScrapeMetricsAsync(this ServiceProcess service, DateTime? generatedAfter = null, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TimeSpan.FromSeconds(60));
        while (true)
        {
            using var response = await http.GetAsync(new Uri(service.HttpAddress, "/metrics"), limit.Token);
            response.EnsureSuccessStatusCode();
            var text = await response.Content.ReadAsStringAsync(limit.Token);
            if (generatedAfter is not { } after || response.Content.Headers.LastModified is not { } made || made.UtcDateTime >= after)
            {
                return PrometheusText.Parse(text);
            }
            await Task.Delay(100, limit.Token);
        }
    }
}

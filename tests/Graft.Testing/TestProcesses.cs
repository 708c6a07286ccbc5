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

    /// <summary>Reads the Prometheus text on <c>/metrics</c>.</summary>
    public static async Task<PrometheusText> ScrapeMetricsAsync(this ServiceProcess service, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var text = await http.GetStringAsync(new Uri(service.HttpAddress, "/metrics"), cancellationToken);
        return PrometheusText.Parse(text);
    }
}

using Graft.Testing;

namespace Graft.Backbone.Tests;

/// <summary>Runtime settings the services' builds write into their runtimeconfig.json (services/Directory.Build.props):
/// the harness builds all three services, so their outputs are here to read.</summary>
public sealed class RuntimeSettingsTests
{
    [Theory]
    [InlineData(GraftService.Backbone)]
    [InlineData(GraftService.Heads)]
    [InlineData(GraftService.Gateway)]
    public void Each_built_service_tells_the_runtime_that_idle_thread_pool_workers_sleep_without_spinning(GraftService service)
    {
        var runtimeConfig = Path.ChangeExtension(RepositoryLayout.ServiceDll(service), ".runtimeconfig.json");
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(runtimeConfig));

        var properties = json.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.Equal(0, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }
}

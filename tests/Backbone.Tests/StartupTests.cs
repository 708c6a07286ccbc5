using Graft.Backbone.Tests.Infrastructure;
using Graft.V1;
using Grpc.Health.V1;
using Microsoft.Extensions.Logging;

namespace Graft.Backbone.Tests;

[Collection(BackboneCollection.Name)]
public sealed class StartupTests(DefaultBackbone backbone)
{
    [Fact]
    public async Task With_device_auto_the_service_uses_cuda_when_it_loads_else_falls_back_to_cpu_and_logs_a_warning()
    {
        var info = await backbone.Client.DescribeAsync(new DescribeBackboneRequest());

        if (info.ExecutionProvider == "CUDAExecutionProvider")
        {
            // A host where CUDA works: no fallback, so no fallback warning.
            Assert.DoesNotContain(backbone.Factory.Logs.Entries, e => e.EventId.Id == 2002);
            return;
        }
        Assert.Equal("CPUExecutionProvider", info.ExecutionProvider);
        var warning = Assert.Single(backbone.Factory.Logs.Entries, e => e.EventId.Id == 2002);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("falling back to CPU", warning.Message);
    }

    [Fact]
    public async Task The_service_reports_serving_on_grpc_health_once_the_model_is_warm()
    {
        var health = new Health.HealthClient(backbone.Factory.CreateChannel());

        var ready = await health.CheckAsync(new HealthCheckRequest { Service = "" });

        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, ready.Status);
        Assert.Contains(backbone.Factory.Logs.Entries, e => e.EventId.Id == 2003);
    }

    [Fact]
    public async Task With_device_cuda_start_up_fails_with_a_message_naming_the_setting_unless_cuda_loads()
    {
        await using var factory = new BackboneFactory(new Dictionary<string, string?> { ["Graft:Backbone:Device"] = "cuda" });
        if ((await backbone.Client.DescribeAsync(new DescribeBackboneRequest())).ExecutionProvider == "CUDAExecutionProvider")
        {
            // A host where CUDA works (device auto chose it): device cuda must start and run on it.
            var info = await new V1.Backbone.BackboneClient(factory.CreateChannel()).DescribeAsync(new DescribeBackboneRequest());
            Assert.Equal("CUDAExecutionProvider", info.ExecutionProvider);
            return;
        }

        var e = Assert.ThrowsAny<Exception>(() => factory.Server);

        var message = e.ToString();
        Assert.Contains("Graft:Backbone:Device is 'cuda'", message);
        Assert.Contains("CUDA execution provider cannot be loaded", message);
    }

    [Fact]
    public async Task An_unknown_profile_fails_start_up_naming_the_built_in_profiles()
    {
        await using var factory = new BackboneFactory(new Dictionary<string, string?> { ["Graft:Backbone:Profile"] = "alexnet" });

        var e = Assert.ThrowsAny<Exception>(() => factory.Server);

        Assert.Contains("resnet18, resnet18-int8, vgg16", e.ToString());
    }
}

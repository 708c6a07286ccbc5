using System.Diagnostics;
using Google.Protobuf;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace Graft.Backbone.Tests;

/// <summary>The built service as its own process, started from an unrelated folder, over real loopback sockets: gRPC on
/// one port, metrics on the other.</summary>
public sealed class RealSocketTests : IAsyncLifetime
{
    private readonly int _grpcPort = PortPlan.FreePort();
    private readonly int _httpPort = PortPlan.FreePort();
    private Process? _process;

    public Task InitializeAsync()
    {
        // The service's own build output (same configuration as this test build), run the way it is deployed.
        var serviceDll = RepositoryLayout.ServiceDll(GraftService.Backbone);
        var start = new ProcessStartInfo("dotnet")
        {
            // Started from another folder, as `dotnet path/to/Graft.BackboneService.dll` often is: the shipped
            // appsettings.json (HTTP/2-only gRPC endpoint) must apply all the same.
            WorkingDirectory = Path.GetTempPath(),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
        {
            serviceDll,
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{_grpcPort}",
            $"--Kestrel:Endpoints:Http:Url=http://127.0.0.1:{_httpPort}",
            "--Graft:Backbone:Device=cpu",
        })
        {
            start.ArgumentList.Add(arg);
        }
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
    }

    [Fact]
    public async Task The_service_process_extracts_over_a_loopback_socket_and_exposes_its_metrics()
    {
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{_grpcPort}");
        await WaitUntilServingAsync(channel);
        var client = new V1.Backbone.BackboneClient(channel);
        var image = ByteString.CopyFrom(File.ReadAllBytes(SampleImages.Load("test")[42].Path));

        var reply = await client.ExtractAsync(new ExtractRequest { Image = image }, deadline: DateTime.UtcNow.AddMinutes(2));
        var info = await client.DescribeAsync(new DescribeBackboneRequest());
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync($"http://127.0.0.1:{_httpPort}/metrics");

        Assert.Equal(512, reply.Dimension);
        Assert.Equal(info.Fingerprint, reply.Fingerprint);
        Assert.Equal("CPUExecutionProvider", info.ExecutionProvider);
        var exposition = PrometheusText.Parse(metrics);
        Assert.True(exposition.Sum("graft_backbone_inferences_total") >= 1, "graft_backbone_inferences_total missing from /metrics");
        Assert.True(exposition.Sum("graft_backbone_cache_misses_total") >= 1, "graft_backbone_cache_misses_total missing from /metrics");
        // Where an extraction's time went: one sample per stage at least (run is per batch).
        foreach (var stage in new[] { "preprocess", "queue", "run" })
        {
            Assert.True(exposition.Sum("graft_backbone_stage_duration_seconds_count", ("stage", stage)) >= 1,
                $"graft_backbone_stage_duration_seconds_count{{stage=\"{stage}\"}} missing from /metrics");
        }
    }


    private async Task WaitUntilServingAsync(GrpcChannel channel)
    {
        var health = new Health.HealthClient(channel);
        var deadline = DateTime.UtcNow.AddMinutes(4); // as the end-to-end harness: a loaded machine starts slowly
        while (true)
        {
            Assert.False(_process!.HasExited, $"the service exited with code {(_process.HasExited ? _process.ExitCode : 0)}");
            try
            {
                var status = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                if (status.Status == HealthCheckResponse.Types.ServingStatus.Serving) return;
            }
            catch (RpcException) when (DateTime.UtcNow < deadline)
            {
            }
            Assert.True(DateTime.UtcNow < deadline, "the service did not report SERVING within 4 minutes");
            await Task.Delay(200);
        }
    }
}

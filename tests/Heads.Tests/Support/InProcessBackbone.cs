using Graft.Backbone;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using BackboneClient = Graft.V1.Backbone.BackboneClient;

namespace Graft.Heads.Tests.Support;

/// <summary>The real BackboneService (ResNet18 on CPU) hosted in the test process, for fixtures that turn the
/// committed samples into features or cut-point activations once.</summary>
internal sealed class InProcessBackbone : IAsyncDisposable
{
    private readonly WebApplicationFactory<BackboneOptions> _factory;
    private readonly GrpcChannel _channel;

    public InProcessBackbone()
    {
        _factory = new WebApplicationFactory<BackboneOptions>().WithWebHostBuilder(b =>
        {
            b.UseSetting("Graft:Backbone:Device", "cpu");
            b.UseSetting("Logging:LogLevel:Default", "Warning");
        });
        _channel = GrpcChannel.ForAddress(_factory.Server.BaseAddress, new GrpcChannelOptions { HttpHandler = _factory.Server.CreateHandler() });
        Client = new BackboneClient(_channel);
    }

    public BackboneClient Client { get; }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _factory.DisposeAsync();
    }
}

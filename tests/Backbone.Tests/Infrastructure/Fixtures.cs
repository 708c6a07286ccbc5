namespace Graft.Backbone.Tests.Infrastructure;

/// <summary>One in-process backbone with default settings (Device=auto, cache on), shared by a test collection so
/// ResNet18 loads once.</summary>
public sealed class DefaultBackbone : IAsyncLifetime
{
    public BackboneFactory Factory { get; } = new();

    public V1.Backbone.BackboneClient Client { get; private set; } = null!;

    public Task InitializeAsync()
    {
        Client = Factory.CreateBackboneClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await Factory.DisposeAsync();
}

/// <summary>A backbone with the feature cache off, so every extraction runs the model.</summary>
public sealed class UncachedBackbone : IAsyncLifetime
{
    public BackboneFactory Factory { get; } = new(new Dictionary<string, string?> { ["Graft:Backbone:CacheBytes"] = "0" });

    public V1.Backbone.BackboneClient Client { get; private set; } = null!;

    public Task InitializeAsync()
    {
        Client = Factory.CreateBackboneClient();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await Factory.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class BackboneCollection : ICollectionFixture<DefaultBackbone>, ICollectionFixture<UncachedBackbone>
{
    public const string Name = "backbone";
}

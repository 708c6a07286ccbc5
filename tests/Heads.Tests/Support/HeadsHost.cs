using Graft.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

namespace Graft.Heads.Tests.Support;

/// <summary>One in-process HeadService replica (a real ASP.NET Core host and gRPC pipeline on a test server)
/// over a given registry folder. Two hosts on one folder behave as two replicas on a shared volume.</summary>
public sealed class HeadsHost : IAsyncDisposable
{
    private readonly WebApplicationFactory<HeadOptions> _factory;
    private readonly GrpcChannel _channel;

    public HeadsHost(string registryPath, IDictionary<string, string?>? settings = null)
    {
        RegistryPath = registryPath;
        _factory = new WebApplicationFactory<HeadOptions>().WithWebHostBuilder(b =>
        {
            b.UseSetting("Graft:Heads:RegistryPath", registryPath);
            b.UseSetting("Graft:Heads:TrainingThreads", "1");
            b.UseSetting("Logging:LogLevel:Default", "Warning");
            foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
            {
                b.UseSetting(key, value);
            }
        });
        _channel = GrpcChannel.ForAddress(_factory.Server.BaseAddress, new GrpcChannelOptions
        {
            HttpHandler = _factory.Server.CreateHandler(),
            MaxReceiveMessageSize = 64 * 1024 * 1024,
            MaxSendMessageSize = 64 * 1024 * 1024,
        });
        Client = new V1.Heads.HeadsClient(_channel);
    }

    public string RegistryPath { get; }

    public V1.Heads.HeadsClient Client { get; }

    public IServiceProvider Services => _factory.Services;

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _factory.DisposeAsync();
    }
}

/// <summary>Client-side helpers for the Train stream.</summary>
public static class TrainCalls
{
    public static HeadSpec Spec(string name, HeadKind kind, string fingerprint, int epochs = 30, double? validation = null, int? patience = null)
    {
        var spec = new HeadSpec { Name = name, Kind = kind, BackboneFingerprint = fingerprint, Epochs = epochs };
        if (validation is { } v)
        {
            spec.ValidationFraction = v;
        }
        if (patience is { } p)
        {
            spec.Patience = p;
        }
        return spec;
    }

    /// <summary>Sends the spec and the rows (in batches), and collects every progress message.</summary>
    public static async Task<List<TrainProgress>> TrainAsync(this V1.Heads.HeadsClient client, HeadSpec spec, IReadOnlyList<FeatureRow> rows, CancellationToken cancellationToken = default, Action<TrainProgress>? observe = null)
    {
        using var call = client.Train(cancellationToken: cancellationToken);
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = spec }, cancellationToken);
            foreach (var chunk in rows.Chunk(64))
            {
                var batch = new FeatureRows();
                batch.Rows.AddRange(chunk);
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = batch }, cancellationToken);
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
        {
            // The server refused the call while rows were still being sent; its status comes with the response stream.
        }
        var progress = new List<TrainProgress>();
        await foreach (var p in call.ResponseStream.ReadAllAsync(cancellationToken))
        {
            observe?.Invoke(p);
            progress.Add(p);
        }
        return progress;
    }

    /// <summary>Trains and returns the published version.</summary>
    public static async Task<HeadVersionInfo> TrainPublishedAsync(this V1.Heads.HeadsClient client, HeadSpec spec, IReadOnlyList<FeatureRow> rows)
    {
        var progress = await client.TrainAsync(spec, rows);
        var last = progress[^1];
        Assert.Equal(TrainPhase.Published, last.Phase);
        return last.Published;
    }

    public static HeadPredictRequest Request(string fingerprint, IEnumerable<float> features, params string[] heads)
    {
        var request = new HeadPredictRequest { BackboneFingerprint = fingerprint };
        request.Features.AddRange(features);
        request.Heads.AddRange(heads);
        return request;
    }

    /// <summary>Polls until <paramref name="condition"/> holds or the timeout passes; returns the elapsed time.</summary>
    public static async Task<TimeSpan> WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (await condition())
            {
                return clock.Elapsed;
            }
            await Task.Delay(50);
        }
        return clock.Elapsed;
    }
}

/// <summary>A registry folder deleted at the end of the test.</summary>
public sealed class TempRegistry : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "graft-heads-tests", Guid.NewGuid().ToString("N"));

    public TempRegistry() => Directory.CreateDirectory(Path);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A host may still be closing a file; the temp folder is cleaned by the OS eventually.
        }
    }
}

public static class RpcAssert
{
    /// <summary>Asserts the call fails with <paramref name="code"/> and returns the status detail.</summary>
    public static async Task<string> Fails(StatusCode code, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(e.StatusCode == code, $"Expected {code}, got {e.StatusCode}: {e.Status.Detail}");
        return e.Status.Detail;
    }
}

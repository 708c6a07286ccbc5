using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>The registry's disk fills up, then turns read-only, while HeadService publishes. A HeadService process of its
/// own runs on a 256 KiB tmpfs; training goes straight to it with synthetic feature rows (no backbone needed).</summary>
public sealed class RegistryFilesystemTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Fingerprint = "reliability:synthetic-features";
    private readonly string _work = Directory.CreateTempSubdirectory("graft-reliability-fs-").FullName;
    private string Registry => Path.Combine(_work, "registry");
    private ServiceProcess? _heads;
    private bool _mounted;

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(Registry);
        _mounted = Mounts.TryMountTmpfs(Registry, "256k", out var error);
        Assert.True(_mounted, $"this test needs root to mount a small tmpfs (CI and the dev machines run as root): {error}");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_heads is not null)
        {
            await _heads.DisposeAsync();
        }
        if (_mounted)
        {
            Mounts.Unmount(Registry);
        }
        Directory.Delete(_work, recursive: true);
    }

    [Fact]
    public async Task Publishing_onto_a_full_or_read_only_registry_fails_clearly_writes_nothing_and_the_old_version_keeps_serving()
    {
        // Arrange: a small head that fits, published before the disk fills.
        _heads = TestProcesses.Create(GraftService.Heads, new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["Graft__Heads__RegistryPath"] = Registry,
            ["Graft__Heads__TrainingThreads"] = "1",
        });
        await _heads.StartAsync(ReliabilityStack.ReadyTimeout);
        var client = new Heads.HeadsClient(_heads.Channel);
        var small = await TrainAsync(client, "small", dimension: 8, hidden: [], rows: 40);
        Assert.Equal(TrainPhase.Published, small.Last().Phase);

        // Act 1: a head whose weights (512x256 + 256x2 floats, about 0.5 MB) do not fit in what is left.
        var full = await Statuses.ExpectAsync(StatusCode.ResourceExhausted, () => TrainAsync(client, "big", dimension: 512, hidden: [256], rows: 40), "publish onto a full disk");

        // Assert 1
        AssertNothingHalfWritten();
        Assert.False(Directory.Exists(Path.Combine(Registry, "big", "v1")));
        await AssertSmallServesVersion1Async(client);
        Assert.Contains("full", full.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain(_work, full.Status.Detail, StringComparison.Ordinal);

        // Act 2: the registry turns read-only; a new version of the small head cannot be published.
        Mounts.RemountReadOnly(Registry);
        var readOnly = await Statuses.ExpectAsync(StatusCode.FailedPrecondition, () => TrainAsync(client, "small", dimension: 8, hidden: [], rows: 40), "publish onto a read-only registry");

        // Assert 2
        AssertNothingHalfWritten();
        Assert.False(Directory.Exists(Path.Combine(Registry, "small", "v2")));
        await AssertSmallServesVersion1Async(client);
        Assert.Contains("read-only", readOnly.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain(_work, readOnly.Status.Detail, StringComparison.Ordinal);
        Assert.True(_heads.IsRunning);
        var line = $"registry on a 256 KiB tmpfs: publish of a 0.5 MB head -> {full.StatusCode} \"{full.Status.Detail}\"; " +
            $"read-only remount -> {readOnly.StatusCode} \"{readOnly.Status.Detail}\"; no version or temp folder left; small v1 kept serving";
        FigureLog.Add(line);
        output.WriteLine(line);
    }

    private void AssertNothingHalfWritten()
    {
        var leftovers = Directory.EnumerateFileSystemEntries(Registry, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(Registry, p))
            .Where(p => p.Contains(".tmp-", StringComparison.Ordinal) || (p.StartsWith("big", StringComparison.Ordinal) && p != "big"))
            .ToList();
        Assert.True(leftovers.Count == 0, "half-written entries: " + string.Join(", ", leftovers));
    }

    private static async Task AssertSmallServesVersion1Async(Heads.HeadsClient client)
    {
        var reply = await client.PredictAsync(new HeadPredictRequest
        {
            Features = { Enumerable.Repeat(0.25f, 8) }, BackboneFingerprint = Fingerprint, Heads = { "small" },
        }, deadline: DateTime.UtcNow.AddSeconds(30));
        Assert.Equal(1, reply.Outputs.Single().Version);
        var list = await client.ListHeadsAsync(new ListHeadsRequest(), deadline: DateTime.UtcNow.AddSeconds(30));
        Assert.Equal(["small:1"], list.Heads.Select(h => $"{h.Name}:{string.Join(",", h.Versions.Select(v => v.Version))}"));
    }

    /// <summary>Two separable classes of synthetic features, streamed to Train.</summary>
    private static async Task<List<TrainProgress>> TrainAsync(Heads.HeadsClient client, string name, int dimension, int[] hidden, int rows)
    {
        var random = new Random(5);
        using var call = client.Train(deadline: DateTime.UtcNow.AddMinutes(3));
        var steps = new List<TrainProgress>();
        try
        {
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest
            {
                Spec = new HeadSpec { Name = name, Kind = HeadKind.Classifier, Epochs = 3, BackboneFingerprint = Fingerprint, Hidden = new HiddenLayers { Sizes = { hidden } } },
            });
            var batch = new FeatureRows();
            for (var i = 0; i < rows; i++)
            {
                var label = i % 2 == 0 ? "left" : "right";
                batch.Rows.Add(new FeatureRow { Features = { Enumerable.Range(0, dimension).Select(_ => (float)random.NextDouble() + (label == "left" ? 0 : 1)) }, Label = label });
            }
            await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = batch });
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // Refused early; the status comes from the response stream.
        }
        await foreach (var step in call.ResponseStream.ReadAllAsync())
        {
            steps.Add(step);
        }
        return steps;
    }
}

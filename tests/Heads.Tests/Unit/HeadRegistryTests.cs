using Graft.Heads.Registry;
using Graft.Heads.Tests.Support;

namespace Graft.Heads.Tests.Unit;

public sealed class HeadRegistryTests : IDisposable
{
    private readonly TempRegistry _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Publishing_lays_out_name_version_folders_and_activates_the_newest()
    {
        var registry = Tiny.Registry(_dir.Path);

        var first = Tiny.Publish(registry);
        var second = Tiny.Publish(registry, seed: 2);

        Assert.Equal((1, 2), (first.Version, second.Version));
        Assert.True(File.Exists(Path.Combine(_dir.Path, "tiny", "v2", "head.json")));
        Assert.True(File.Exists(Path.Combine(_dir.Path, "tiny", "v2", "weights.safetensors")));
        Assert.Equal("2", File.ReadAllText(Path.Combine(_dir.Path, "tiny", "active")).Trim());
        Assert.Equal(2, registry.Current.Heads["tiny"].DesiredVersion);
    }

    [Fact]
    public void A_version_published_without_activation_does_not_move_the_pointer()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);

        Tiny.Publish(registry, seed: 2, activate: false);

        Assert.Equal(1, registry.Current.Heads["tiny"].DesiredVersion);
    }

    [Fact]
    public void Two_replicas_publishing_at_once_get_distinct_versions()
    {
        var a = Tiny.Registry(_dir.Path);
        var b = Tiny.Registry(_dir.Path);
        var heads = Enumerable.Range(0, 6).Select(i => Tiny.Head(seed: i)).ToList();

        var versions = heads.AsParallel().WithDegreeOfParallelism(6)
            .Select((h, i) => (i % 2 == 0 ? a : b).Publish(h.Manifest, SafeTensors.Serialize(h.Weights)).Version)
            .ToList();

        Assert.Equal([1, 2, 3, 4, 5, 6], versions.Order());
        Assert.All(a.Rescan().Heads["tiny"].Versions, v => Assert.True(v.IsUsable, v.Error));
    }

    [Fact]
    public void A_half_written_version_left_by_a_crash_is_invisible()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        var crashed = Directory.CreateDirectory(Path.Combine(_dir.Path, "tiny", ".tmp-0123456789abcdef"));
        File.WriteAllText(Path.Combine(crashed.FullName, "weights.safetensors"), "partial");

        var snapshot = registry.Rescan();

        Assert.Equal([1], snapshot.Heads["tiny"].Versions.Select(v => v.Version));
        Assert.Equal(2, Tiny.Publish(registry, seed: 2).Version);
    }

    [Fact]
    public void A_truncated_weights_file_is_reported_at_scan_and_not_usable()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        var weights = Path.Combine(_dir.Path, "tiny", "v1", "weights.safetensors");
        using (var stream = new FileStream(weights, FileMode.Open))
        {
            stream.SetLength(stream.Length / 2);
        }

        var entry = registry.Rescan().Heads["tiny"].Find(1)!;

        Assert.False(entry.IsUsable);
        Assert.Contains("truncated", entry.Error);
    }

    [Fact]
    public void A_corrupted_weights_file_fails_its_checksum_at_load()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        var weights = Path.Combine(_dir.Path, "tiny", "v1", "weights.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^5] ^= 0xFF;
        File.WriteAllBytes(weights, bytes);

        var e = Assert.Throws<InvalidDataException>(() => HeadWeights.Load(registry.Rescan().Heads["tiny"].Find(1)!));

        Assert.Contains("SHA-256", e.Message);
    }

    [Fact]
    public void Activating_a_corrupt_version_is_refused_and_the_pointer_stays()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        Tiny.Publish(registry, seed: 2, activate: false);
        File.WriteAllText(Path.Combine(_dir.Path, "tiny", "v2", "head.json"), "{ not json");
        registry.Rescan();

        var e = Assert.Throws<HeadException>(() => registry.Activate("tiny", 2));

        Assert.Equal(HeadErrorKind.FailedPrecondition, e.Kind);
        Assert.Equal(1, registry.Current.Heads["tiny"].DesiredVersion);
    }

    [Fact]
    public void The_active_version_cannot_be_deleted_but_the_whole_head_can()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        Tiny.Publish(registry, seed: 2);

        Assert.Equal(HeadErrorKind.FailedPrecondition, Assert.Throws<HeadException>(() => registry.Delete("tiny", 2)).Kind);
        Assert.Equal([1], registry.Delete("tiny", 1));
        Assert.Equal([2], registry.Delete("tiny", 0));
        Assert.Empty(registry.Current.Heads);
        Assert.False(Directory.Exists(Path.Combine(_dir.Path, "tiny")));
    }

    [Fact]
    public void An_unknown_head_is_not_found_and_the_message_lists_existing_heads()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry, "alpha");
        Tiny.Publish(registry, "beta");

        var e = Assert.Throws<HeadException>(() => registry.RequireHead("gamma"));

        Assert.Equal(HeadErrorKind.NotFound, e.Kind);
        Assert.Contains("alpha, beta", e.Message);
    }

    [Fact]
    public void A_path_escaping_name_is_invalid_before_any_file_access()
    {
        var registry = Tiny.Registry(_dir.Path);

        var e = Assert.Throws<HeadException>(() => registry.RequireHead("../outside"));

        Assert.Equal(HeadErrorKind.InvalidArgument, e.Kind);
    }

    [Fact]
    public void Folders_that_are_not_heads_or_versions_are_ignored()
    {
        var registry = Tiny.Registry(_dir.Path);
        Tiny.Publish(registry);
        Directory.CreateDirectory(Path.Combine(_dir.Path, "Not-A-Head"));
        Directory.CreateDirectory(Path.Combine(_dir.Path, "tiny", "v01"));
        Directory.CreateDirectory(Path.Combine(_dir.Path, "empty-head"));

        var snapshot = registry.Rescan();

        Assert.Equal(["tiny"], snapshot.Heads.Keys);
        Assert.Equal([1], snapshot.Heads["tiny"].Versions.Select(v => v.Version));
    }
}

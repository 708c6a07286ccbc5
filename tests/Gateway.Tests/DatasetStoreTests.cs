using Google.Protobuf;
using Graft.Gateway.Datasets;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Tests;

/// <summary>The training-set store on a real folder, without the services: content addressing, limits, read-back
/// checks and collection.</summary>
public sealed class DatasetStoreTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("graft-datasets-unit-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private DatasetStore Store(long maxStoreBytes = 1L << 30, long maxDatasetBytes = 1L << 30) => new(
        Options.Create(new DatasetOptions { Path = _root, MaxStoreBytes = maxStoreBytes, MaxDatasetBytes = maxDatasetBytes }),
        NullLogger<DatasetStore>.Instance);

    private static LabelledImage Image(string content, string label) => new() { Image = ByteString.CopyFromUtf8(content.PadRight(600, '.')), Label = label };

    private static readonly HeadSpec Spec = new() { Name = "kind", Kind = HeadKind.Classifier, Epochs = 3, BackboneFingerprint = "resnet18:abc" };

    private List<string> Images() => Directory.Exists(Path.Combine(_root, "images"))
        ? Directory.GetFiles(Path.Combine(_root, "images"), "*", SearchOption.AllDirectories).ToList()
        : [];

    [Fact]
    public async Task Images_shared_by_two_training_sets_are_stored_once_and_the_same_data_and_spec_give_the_same_id()
    {
        var store = Store();
        var a = await store.SaveAsync(store.Prepare(Spec, [Image("1", "a"), Image("2", "b"), Image("1", "a")]), default);
        var again = await store.SaveAsync(store.Prepare(Spec, [Image("1", "a"), Image("2", "b"), Image("1", "a")]), default);
        var other = await store.SaveAsync(store.Prepare(Spec, [Image("1", "b"), Image("3", "a")]), default);

        Assert.Equal(a.Id, again.Id);
        Assert.NotEqual(a.Id, other.Id);
        Assert.Equal(3, Images().Count);
        Assert.Equal(2, a.Images);
        Assert.Equal(3, a.Examples.Count);
        Assert.Equal("", DatasetStore.SpecOf(a).BackboneFingerprint);
        Assert.Equal(3, DatasetStore.SpecOf(a).Epochs);
        var back = await store.LoadExamplesAsync(Store().Find(a.Id)!, default);
        Assert.Equal(["a", "b", "a"], back.Select(e => e.Label));
        Assert.Equal(Image("2", "b").Image, back[1].Image);
    }

    [Fact]
    public async Task A_training_set_over_the_store_limit_is_refused_naming_the_key_and_writes_nothing()
    {
        var store = Store(maxStoreBytes: 2000, maxDatasetBytes: 2000);
        await store.SaveAsync(store.Prepare(Spec, [Image("1", "a"), Image("2", "b")]), default);

        var e = Assert.Throws<RpcException>(() => store.Prepare(Spec, [Image("1", "a"), Image("3", "b"), Image("4", "b")]));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("Graft:Gateway:Datasets:MaxStoreBytes", e.Status.Detail);
        Assert.Equal(2, Images().Count);
        // Images already stored cost nothing more: a set reusing them fits.
        store.Prepare(Spec, [Image("1", "a"), Image("2", "a"), Image("3", "b")]);
    }

    [Fact]
    public void A_training_set_over_the_per_set_limit_is_refused_naming_the_key()
    {
        var e = Assert.Throws<RpcException>(() => Store(maxDatasetBytes: 1024).Prepare(Spec, [Image("1", "a"), Image("2", "b")]));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("Graft:Gateway:Datasets:MaxDatasetBytes", e.Status.Detail);
        Assert.Empty(Images());
    }

    [Fact]
    public async Task An_image_altered_on_disk_is_data_loss_on_read_back()
    {
        var store = Store();
        var set = await store.SaveAsync(store.Prepare(Spec, [Image("1", "a"), Image("2", "b")]), default);
        await File.WriteAllTextAsync(Images()[0], "not the same bytes");

        var e = await Assert.ThrowsAsync<RpcException>(() => store.LoadExamplesAsync(set, default));

        Assert.Equal(StatusCode.DataLoss, e.StatusCode);
    }

    [Fact]
    public async Task Releasing_a_set_keeps_the_images_another_set_names_and_removes_the_rest()
    {
        var store = Store();
        var first = await store.SaveAsync(store.Prepare(Spec, [Image("1", "a"), Image("2", "b")]), default);
        var second = await store.SaveAsync(store.Prepare(Spec, [Image("2", "a"), Image("3", "b")]), default);
        await Task.Delay(2500); // collection spares images written in the last 2 s (another replica may be storing them)

        // Still named by a version: kept even when asked to release.
        var kept = await store.CollectAsync([first.Id], new HashSet<string> { first.Id, second.Id }, orphanAge: null, default);
        Assert.Equal(0, kept.Datasets);
        Assert.Equal(3, Images().Count);

        var released = await store.CollectAsync([first.Id], new HashSet<string> { second.Id }, orphanAge: null, default);

        Assert.Equal(1, released.Datasets);
        Assert.Equal(1, released.Images);
        Assert.Null(store.Find(first.Id));
        Assert.NotNull(store.Find(second.Id));
        Assert.Equal(2, Images().Count);
    }
}

using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Google.Protobuf;
using Graft.ServiceDefaults;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Datasets;

/// <summary>
/// The training-set store on disk: <c>images/&lt;ab&gt;/&lt;sha256&gt;</c> holds each distinct image once, however many
/// training sets use it; <c>datasets/&lt;id&gt;.json</c> is one training set (<see cref="DatasetManifest"/>). Every file
/// is written to <c>tmp/</c>, fsynced and renamed into place, and a manifest only after all its images, so a crash never
/// leaves a training set that names a missing image; a crash before HeadService publishes leaves a manifest no version
/// names, which the start-up collection removes. Mutations in one process are serialised; for several gateway replicas
/// on one volume, an image is only collected when it was last written or reused before the collection began.
/// </summary>
public sealed partial class DatasetStore
{
    private const string ImagesFolder = "images";
    private const string DatasetsFolder = "datasets";
    private const string TempFolder = "tmp";
    private const string ManifestExtension = ".json";

    private readonly DatasetOptions _options;
    private readonly ILogger<DatasetStore> _logger;
    private readonly SemaphoreSlim _mutation = new(1, 1);
    private readonly ConcurrentDictionary<string, DatasetManifest> _manifests = new(StringComparer.Ordinal);

    public DatasetStore(IOptions<DatasetOptions> options, ILogger<DatasetStore> logger)
    {
        _options = options.Value;
        _logger = logger;
        Root = string.IsNullOrWhiteSpace(_options.Path) ? null : _options.Path;
    }

    /// <summary>The store's folder; null when no store is configured.</summary>
    public string? Root { get; }

    public bool Enabled => Root is not null;

    /// <summary>Whether a TrainHead request keeps its training set: its own <c>keep_training_data</c>, else the configured
    /// default. Records the answer in the spec so the version says it. An explicit keep on a gateway with no store is refused.</summary>
    public bool ShouldKeep(HeadSpec spec)
    {
        if (spec.HasKeepTrainingData && spec.KeepTrainingData && !Enabled)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"spec.keep_training_data is true but this gateway has no training-set store ({DatasetOptions.Section}:Path is not set); " +
                "set it (graft up and the Kubernetes manifests do), or leave keep_training_data unset."));
        }
        var keep = Enabled && (spec.HasKeepTrainingData ? spec.KeepTrainingData : _options.KeepTrainingData);
        spec.KeepTrainingData = keep;
        return keep;
    }

    /// <summary>Hashes the examples into a training set and refuses it when it would break a limit: before anything is
    /// extracted, trained or written.</summary>
    public PreparedDataset Prepare(HeadSpec spec, IReadOnlyList<LabelledImage> examples)
    {
        var hashes = examples.Select(e => Convert.ToHexStringLower(SHA256.HashData(e.Image.Span))).ToArray();
        var distinct = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal);
        for (var i = 0; i < examples.Count; i++)
        {
            distinct.TryAdd(hashes[i], examples[i].Image.Memory);
        }
        var stored = StoredSpec(spec);
        var manifest = new DatasetManifest
        {
            Id = DatasetId(stored, examples, hashes),
            Head = spec.Name,
            Created = DateTimeOffset.UtcNow,
            Spec = JsonDocument.Parse(JsonFormatter.Default.Format(stored)).RootElement.Clone(),
            Examples = examples.Select((e, i) => e.TargetCase == LabelledImage.TargetOneofCase.Label
                ? new DatasetExample(hashes[i], Label: e.Label)
                : new DatasetExample(hashes[i], Value: e.Value)).ToList(),
            Images = distinct.Count,
            ImageBytes = distinct.Sum(d => (long)d.Value.Length),
        };
        CheckLimits(manifest.ImageBytes, distinct.Keys);
        return new PreparedDataset(manifest, distinct);
    }

    /// <summary>Writes a prepared training set (its new images, then its manifest). The limits are checked again under
    /// the store's lock, so two trainings at once cannot overrun them together.</summary>
    public async Task<DatasetManifest> SaveAsync(PreparedDataset prepared, CancellationToken cancellationToken)
    {
        var root = Root ?? throw new InvalidOperationException("No dataset store is configured.");
        var (manifest, distinct) = (prepared.Manifest, prepared.Images);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            CheckLimits(manifest.ImageBytes, distinct.Keys);
            var temp = Directory.CreateDirectory(Path.Combine(root, TempFolder)).FullName;
            var folders = new HashSet<string>(StringComparer.Ordinal);
            var written = 0;
            foreach (var (hash, bytes) in distinct)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var path = ImagePath(hash);
                if (Reuse(path))
                {
                    continue;
                }
                var folder = Directory.CreateDirectory(Path.GetDirectoryName(path)!).FullName;
                WriteFile(temp, path, bytes.Span);
                folders.Add(folder);
                written++;
            }
            foreach (var folder in folders)
            {
                Durable.FsyncDirectory(folder);
            }
            var manifests = Directory.CreateDirectory(Path.Combine(root, DatasetsFolder)).FullName;
            WriteFile(temp, ManifestPath(manifest.Id), JsonSerializer.SerializeToUtf8Bytes(manifest, DatasetManifest.Json));
            Durable.FsyncDirectory(manifests);
            _manifests[manifest.Id] = manifest;
            LogStored(_logger, manifest.Id, manifest.Head, manifest.Examples.Count, distinct.Count, written, manifest.ImageBytes);
            return manifest;
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>The training set <paramref name="id"/>, or null when the store has none by that id.</summary>
    public DatasetManifest? Find(string id)
    {
        if (Root is null || !IsId(id))
        {
            return null;
        }
        if (_manifests.TryGetValue(id, out var cached))
        {
            return cached;
        }
        try
        {
            var manifest = JsonSerializer.Deserialize<DatasetManifest>(File.ReadAllBytes(ManifestPath(id)), DatasetManifest.Json);
            return manifest is { Format: DatasetManifest.CurrentFormat } && manifest.Id == id ? _manifests[id] = manifest : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    /// <summary>The spec a training set was trained with (without a backbone fingerprint).</summary>
    public static HeadSpec SpecOf(DatasetManifest manifest) => JsonParser.Default.Parse<HeadSpec>(manifest.Spec.GetRawText());

    /// <summary>Reads every example back, checking each image against its SHA-256: a missing or altered image is DATA_LOSS.</summary>
    public async Task<List<LabelledImage>> LoadExamplesAsync(DatasetManifest manifest, CancellationToken cancellationToken)
    {
        var images = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        var examples = new List<LabelledImage>(manifest.Examples.Count);
        foreach (var example in manifest.Examples)
        {
            if (!images.TryGetValue(example.Image, out var image))
            {
                byte[] bytes;
                try
                {
                    bytes = await File.ReadAllBytesAsync(ImagePath(example.Image), cancellationToken);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new RpcException(new Status(StatusCode.DataLoss,
                        $"training set {manifest.Id} names image {example.Image}, which the store cannot read ({e.Message}); train the head again from its images."));
                }
                if (Convert.ToHexStringLower(SHA256.HashData(bytes)) != example.Image)
                {
                    throw new RpcException(new Status(StatusCode.DataLoss,
                        $"image {example.Image} of training set {manifest.Id} no longer matches its SHA-256 (altered on disk); train the head again from its images."));
                }
                images[example.Image] = image = ByteString.CopyFrom(bytes);
            }
            var labelled = new LabelledImage { Image = image };
            if (example.Label is not null)
            {
                labelled.Label = example.Label;
            }
            else
            {
                labelled.Value = example.Value ?? 0;
            }
            examples.Add(labelled);
        }
        return examples;
    }

    /// <summary>Removes the training sets in <paramref name="candidates"/> that no version names (<paramref name="referenced"/>),
    /// every other unnamed one older than <paramref name="orphanAge"/> (null: only the candidates), and then every image
    /// no remaining training set names.</summary>
    public async Task<CollectResult> CollectAsync(
        IEnumerable<string> candidates, IReadOnlySet<string> referenced, TimeSpan? orphanAge, CancellationToken cancellationToken)
    {
        if (Root is null)
        {
            return new CollectResult(0, 0, 0);
        }
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            // Images written or reused after this instant may belong to a training set another replica is writing now.
            var started = DateTime.UtcNow.AddSeconds(-2);
            var release = new HashSet<string>(candidates.Where(IsId), StringComparer.Ordinal);
            var datasets = 0;
            var live = new HashSet<string>(StringComparer.Ordinal);
            foreach (var file in Files(DatasetsFolder))
            {
                var id = Path.GetFileNameWithoutExtension(file.Name);
                var orphan = !referenced.Contains(id) &&
                             (release.Contains(id) || (orphanAge is { } age && file.LastWriteTimeUtc < started - age));
                if (orphan)
                {
                    _manifests.TryRemove(id, out _);
                    if (TryDelete(file))
                    {
                        datasets++;
                    }
                    continue;
                }
                if (Find(id) is { } manifest)
                {
                    live.UnionWith(manifest.Examples.Select(e => e.Image));
                }
                else if (file.LastWriteTimeUtc >= started - TimeSpan.FromMinutes(1))
                {
                    // Unreadable yet recent: maybe still being renamed in by another replica. Keep every image this round.
                    return new CollectResult(datasets, 0, 0);
                }
            }

            var images = 0;
            long bytes = 0;
            foreach (var file in Files(ImagesFolder))
            {
                if (!live.Contains(file.Name) && file.LastWriteTimeUtc < started)
                {
                    var length = file.Length;
                    if (TryDelete(file))
                    {
                        images++;
                        bytes += length;
                    }
                }
            }
            foreach (var file in Files(TempFolder))
            {
                if (file.LastWriteTimeUtc < started - (orphanAge ?? TimeSpan.FromHours(1)))
                {
                    TryDelete(file);
                }
            }
            LogCollected(_logger, datasets, images, bytes);
            return new CollectResult(datasets, images, bytes);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>Distinct images and bytes the store holds now.</summary>
    public (int Images, long Bytes) Usage()
    {
        var files = Files(ImagesFolder).ToList();
        return (files.Count, files.Sum(f => f.Length));
    }

    /// <summary>Fills in whether a version can be retrained, and the size of its training set.</summary>
    public void Annotate(HeadVersionInfo version)
    {
        if (version.Spec is { Dataset.Length: > 0 } spec && Find(spec.Dataset) is { } manifest)
        {
            version.Retrainable = true;
            version.DatasetBytes = manifest.ImageBytes;
            version.DatasetExamples = manifest.Examples.Count;
        }
    }

    public static bool IsId(string id) => id.Length == 64 && id.All(char.IsAsciiHexDigitLower);

    private void CheckLimits(long datasetBytes, IEnumerable<string> hashes)
    {
        if (datasetBytes > _options.MaxDatasetBytes)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"this training set is {datasetBytes} bytes of distinct images; one stored training set may hold at most {_options.MaxDatasetBytes} " +
                $"({DatasetOptions.Section}:MaxDatasetBytes). Nothing was trained or stored: train on fewer images, set keep_training_data " +
                "to false (the head will not be retrainable), or ask the operator to raise the limit."));
        }
        var (_, used) = Usage();
        var added = datasetBytes - hashes.Where(h => File.Exists(ImagePath(h))).Sum(h => new FileInfo(ImagePath(h)).Length);
        if (used + added > _options.MaxStoreBytes)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"the training-set store holds {used} bytes of images and this training set adds {added}, over its limit of {_options.MaxStoreBytes} " +
                $"({DatasetOptions.Section}:MaxStoreBytes). Nothing was trained or stored: delete heads you no longer need (their training sets are " +
                "released), set keep_training_data to false for this head (it will not be retrainable), or ask the operator to raise the limit."));
        }
    }

    /// <summary>An existing image is reused; its time stamp is renewed so a collection that began before this moment spares it.</summary>
    private static bool Reuse(string path)
    {
        try
        {
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
            return true;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
    }

    private static void WriteFile(string tempFolder, string path, ReadOnlySpan<byte> bytes)
    {
        var temp = Path.Combine(tempFolder, Guid.NewGuid().ToString("N"));
        try
        {
            Durable.WriteNewFile(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    private static HeadSpec StoredSpec(HeadSpec spec)
    {
        var stored = spec.Clone();
        stored.BackboneFingerprint = "";
        stored.Dataset = "";
        stored.ClearKeepTrainingData();
        return stored;
    }

    private static string DatasetId(HeadSpec stored, IReadOnlyList<LabelledImage> examples, string[] hashes)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(stored.ToByteArray());
        for (var i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(
                $"\n{hashes[i]}\t{(e.TargetCase == LabelledImage.TargetOneofCase.Label ? "L" + e.Label : "V" + e.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture))}"));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private string ImagePath(string hash) => Path.Combine(Root!, ImagesFolder, hash[..2], hash);

    private string ManifestPath(string id) => Path.Combine(Root!, DatasetsFolder, id + ManifestExtension);

    private IEnumerable<FileInfo> Files(string folder)
    {
        var path = Path.Combine(Root!, folder);
        return Directory.Exists(path)
            ? new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories)
            : [];
    }

    private bool TryDelete(FileInfo file)
    {
        try
        {
            file.Delete();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogDeleteFailed(_logger, file.FullName, e.Message);
            return false;
        }
    }

    [LoggerMessage(EventId = 4500, Level = LogLevel.Information,
        Message = "Training set {Id} stored for {Head}: {Examples} examples, {Images} distinct images ({Written} new), {Bytes} bytes")]
    private static partial void LogStored(ILogger logger, string id, string head, int examples, int images, int written, long bytes);

    [LoggerMessage(EventId = 4501, Level = LogLevel.Information, Message = "Training-set store collected {Datasets} training sets and {Images} images ({Bytes} bytes)")]
    private static partial void LogCollected(ILogger logger, int datasets, int images, long bytes);

    [LoggerMessage(EventId = 4502, Level = LogLevel.Warning, Message = "Training-set store could not delete {Path}: {Reason}")]
    private static partial void LogDeleteFailed(ILogger logger, string path, string reason);
}

/// <summary>A training set hashed and checked against the limits, not yet written.</summary>
public sealed record PreparedDataset(DatasetManifest Manifest, IReadOnlyDictionary<string, ReadOnlyMemory<byte>> Images);

/// <summary>What one collection removed.</summary>
public sealed record CollectResult(int Datasets, int Images, long Bytes);

using System.Diagnostics;
using Graft.Gateway.Datasets;
using Graft.Gateway.Downstream;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Flows;

/// <summary>TrainHead: buffers the labelled images (the total is known only when the client stream ends), turns them
/// into features through the backbone in concurrent batches, keeps them in the training-set store (unless the spec opts
/// out), then streams spec + rows to HeadService and relays its progress. RetrainHead runs the same steps on a stored set.</summary>
public sealed partial class TrainingFlow(
    BackboneDownstream backbone, HeadsDownstream heads, DatasetStore datasets, DatasetReferences references,
    IOptions<GatewayOptions> options, ILogger<TrainingFlow> logger)
{
    private const int RowsPerMessage = 256;

    public async Task TrainAsync(IAsyncStreamReader<TrainHeadRequest> requests, IServerStreamWriter<TrainProgress> progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (spec, examples) = await ReadAsync(requests, cancellationToken);
        LogTrainingStarted(logger, spec.Name, spec.Kind, examples.Count);
        // A client never names a stored set itself; limits fail here, before any work.
        spec.Dataset = "";
        var prepared = datasets.ShouldKeep(spec) ? datasets.Prepare(spec, examples) : null;

        var rows = await ExtractAsync(spec, examples, progress, clock, cancellationToken);
        if (prepared is not null)
        {
            // Stored after the backbone accepted every image, before HeadService trains.
            spec.Dataset = (await datasets.SaveAsync(prepared, cancellationToken)).Id;
        }
        HeadVersionInfo published;
        try
        {
            published = await TrainOnHeadsAsync(spec, rows, progress, clock, cancellationToken);
        }
        catch when (prepared is not null)
        {
            // No version names the set (unless an earlier one trained on the very same data): release it now.
            using var release = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await references.ReleaseAsync([spec.Dataset], release.Token);
            throw;
        }
        LogTrainingPublished(logger, published.Name, published.Version, clock.Elapsed.TotalSeconds);
    }

    /// <summary>RetrainHead: the stored training set and spec of one version, through the backbone in use, published as a
    /// new version under that backbone's fingerprint.</summary>
    public async Task RetrainAsync(RetrainHeadRequest request, IServerStreamWriter<TrainProgress> progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        if (string.IsNullOrWhiteSpace(request.Name))
        {
            throw Invalid("name is required: the name of a head (see ListHeads).");
        }
        if (request.Version < 0)
        {
            throw Invalid($"version must be 0 (the version serving now) or a version number of head '{request.Name}' (got {request.Version}).");
        }
        var head = await heads.GetAsync(new GetHeadRequest { Name = request.Name }, cancellationToken);
        var source = request.Version != 0
            ? head.Versions.FirstOrDefault(v => v.Version == request.Version) ?? throw new RpcException(new Status(StatusCode.NotFound,
                $"head '{head.Name}' has no version {request.Version}; its versions are {string.Join(", ", head.Versions.Select(v => "v" + v.Version))}."))
            : head.Versions.FirstOrDefault(v => v.Version == head.ActiveVersion)
              ?? head.Versions.FirstOrDefault(v => v.Version == head.PointerVersion)
              ?? head.Versions.LastOrDefault()
              ?? throw new RpcException(new Status(StatusCode.NotFound, $"head '{head.Name}' has no versions."));
        var spec = source.Spec ?? new HeadSpec();
        if (spec.Dataset.Length == 0)
        {
            var why = spec is { HasKeepTrainingData: true, KeepTrainingData: false }
                ? "it was trained with keep_training_data off, or on a gateway without a training-set store"
                : "it was trained before training sets were kept, or from feature rows straight through HeadService";
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"head '{head.Name}' v{source.Version} is not retrainable: no training set is stored for it ({why}). " +
                $"Train it again from its images (graft train {head.Name} --data ...); the new version keeps them, so later backbone changes need only a retrain."));
        }
        var manifest = datasets.Find(spec.Dataset) ?? throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"head '{head.Name}' v{source.Version} names training set {spec.Dataset}, which is not in this gateway's training-set store " +
            $"({(datasets.Enabled ? datasets.Root : DatasetOptions.Section + ":Path is not set")}). Train it again from its images."));

        var retrain = DatasetStore.SpecOf(manifest);
        retrain.Name = head.Name;
        retrain.Dataset = manifest.Id;
        retrain.KeepTrainingData = true;
        // The stored spec names the backbone it was trained on; the retrain targets the one asked for, else the first to answer.
        retrain.BackboneFingerprint = request.BackboneFingerprint;
        var examples = await datasets.LoadExamplesAsync(manifest, cancellationToken);
        LogRetrainStarted(logger, head.Name, source.Version, manifest.Id, examples.Count);
        await progress.WriteAsync(new TrainProgress
        {
            Phase = TrainPhase.Extracting,
            ImagesTotal = examples.Count,
            Message = $"retraining {head.Name} from the training set of v{source.Version} ({examples.Count} examples, {manifest.Images} images) on the backbone in use",
            ElapsedSeconds = clock.Elapsed.TotalSeconds,
        }, cancellationToken);

        var rows = await ExtractAsync(retrain, examples, progress, clock, cancellationToken);
        var published = await TrainOnHeadsAsync(retrain, rows, progress, clock, cancellationToken);
        LogTrainingPublished(logger, published.Name, published.Version, clock.Elapsed.TotalSeconds);
    }

    private async Task<(HeadSpec Spec, List<LabelledImage> Examples)> ReadAsync(IAsyncStreamReader<TrainHeadRequest> requests, CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (!await requests.MoveNext(cancellationToken))
        {
            throw Invalid("the stream was empty: send a HeadSpec first, then the labelled examples.");
        }
        if (requests.Current.ItemCase != TrainHeadRequest.ItemOneofCase.Spec)
        {
            throw Invalid("the first TrainHead message must be the spec (name, kind, hyperparameters); the examples follow it.");
        }
        var spec = requests.Current.Spec.Clone();
        if (string.IsNullOrWhiteSpace(spec.Name))
        {
            throw Invalid("spec.name is required (e.g. \"length-cm\").");
        }
        if (spec.Kind == HeadKind.Unspecified)
        {
            throw Invalid("spec.kind is required: HEAD_KIND_REGRESSOR or HEAD_KIND_CLASSIFIER.");
        }

        var examples = new List<LabelledImage>();
        long bytes = 0;
        while (await requests.MoveNext(cancellationToken))
        {
            var item = requests.Current;
            var number = examples.Count + 1;
            if (item.ItemCase != TrainHeadRequest.ItemOneofCase.Example)
            {
                throw Invalid($"message {number + 1} is a second spec; only the first message may be the spec.");
            }
            var example = item.Example;
            CheckExample(spec.Kind, example, number);
            bytes += example.Image.Length;
            if (examples.Count + 1 > o.MaxTrainExamples || bytes > o.MaxTrainBytes)
            {
                throw new RpcException(new Status(StatusCode.ResourceExhausted,
                    $"too many examples for one TrainHead call: the gateway accepts at most {o.MaxTrainExamples} images and {o.MaxTrainBytes} bytes " +
                    "(Graft:Gateway:MaxTrainExamples / MaxTrainBytes). Train on fewer images, or train from features through HeadService."));
            }
            examples.Add(example);
        }
        if (examples.Count == 0)
        {
            throw Invalid("no examples followed the spec: send at least one labelled image.");
        }
        return (spec, examples);
    }

    private static void CheckExample(HeadKind kind, LabelledImage example, int number)
    {
        if (example.Image.IsEmpty)
        {
            throw Invalid($"example {number} has no image bytes.");
        }
        switch (kind)
        {
            case HeadKind.Regressor when example.TargetCase != LabelledImage.TargetOneofCase.Value:
                throw Invalid($"example {number}: a regressor needs a numeric target ('value'), not {Describe(example.TargetCase)}.");
            case HeadKind.Regressor when !double.IsFinite(example.Value):
                throw Invalid($"example {number}: the target value must be a finite number (got {example.Value}).");
            case HeadKind.Classifier when example.TargetCase != LabelledImage.TargetOneofCase.Label:
                throw Invalid($"example {number}: a classifier needs a string 'label', not {Describe(example.TargetCase)}.");
            case HeadKind.Classifier when string.IsNullOrWhiteSpace(example.Label):
                throw Invalid($"example {number}: the label is empty.");
        }

        static string Describe(LabelledImage.TargetOneofCase c) => c switch
        {
            LabelledImage.TargetOneofCase.None => "no target",
            LabelledImage.TargetOneofCase.Value => "a numeric value",
            _ => "a label",
        };
    }

    private async Task<List<FeatureRow>> ExtractAsync(
        HeadSpec spec, List<LabelledImage> examples, IServerStreamWriter<TrainProgress> progress, Stopwatch clock, CancellationToken cancellationToken)
    {
        var batch = options.Value.ExtractConcurrency;
        var rows = new List<FeatureRow>(examples.Count);
        await progress.WriteAsync(Extracting(0, examples.Count, clock), cancellationToken);
        // One training set never mixes features of two backbones: the job is pinned to the backbone the spec names, else
        // to the one that answers the first image; during a rolling upgrade every other image is fetched from a replica
        // of that backbone (one of another backbone refuses at once and the Extract is asked again, boundedly). The first image
        // is asked for again below; the backbone's cache answers that for free.
        var fingerprint = string.IsNullOrEmpty(spec.BackboneFingerprint)
            ? (await ExtractOneAsync(examples[0], 1, null, cancellationToken)).Fingerprint
            : spec.BackboneFingerprint;

        for (var start = 0; start < examples.Count; start += batch)
        {
            var count = Math.Min(batch, examples.Count - start);
            // Concurrent Extract calls let the backbone batch them; its cache makes a repeated image free.
            var replies = await Task.WhenAll(Enumerable.Range(start, count).Select(i => ExtractOneAsync(examples[i], i + 1, fingerprint, cancellationToken)));
            for (var k = 0; k < count; k++)
            {
                var reply = replies[k];
                var example = examples[start + k];
                var row = new FeatureRow { Features = { reply.Features } };
                if (example.TargetCase == LabelledImage.TargetOneofCase.Value)
                {
                    row.Value = example.Value;
                }
                else
                {
                    row.Label = example.Label;
                }
                rows.Add(row);
            }
            await progress.WriteAsync(Extracting(start + count, examples.Count, clock), cancellationToken);
        }

        spec.BackboneFingerprint = fingerprint;
        return rows;
    }

    private async Task<ExtractReply> ExtractOneAsync(LabelledImage example, int number, string? fingerprint, CancellationToken cancellationToken)
    {
        try
        {
            return fingerprint is null
                ? await backbone.ExtractAsync(example.Image, cancellationToken)
                : await backbone.ExtractFromAsync(example.Image, fingerprint, options.Value.FingerprintAttempts, cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            throw Invalid($"example {number}: {e.Status.Detail}");
        }
    }

    private Task<HeadVersionInfo> TrainOnHeadsAsync(
        HeadSpec spec, List<FeatureRow> rows, IServerStreamWriter<TrainProgress> progress, Stopwatch clock, CancellationToken cancellationToken)
        => heads.TrainAsync(spec, rows, RowsPerMessage, async step =>
        {
            step.ElapsedSeconds = clock.Elapsed.TotalSeconds;
            await progress.WriteAsync(step, cancellationToken);
        }, cancellationToken);

    private static TrainProgress Extracting(int done, int total, Stopwatch clock) => new()
    {
        Phase = TrainPhase.Extracting,
        ImagesDone = done,
        ImagesTotal = total,
        ElapsedSeconds = clock.Elapsed.TotalSeconds,
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Training head {Name} ({Kind}) from {Count} images")]
    private static partial void LogTrainingStarted(ILogger logger, string name, HeadKind kind, int count);

    [LoggerMessage(EventId = 4520, Level = LogLevel.Information, Message = "Retraining head {Name} from the training set {Dataset} of v{Version} ({Count} examples)")]
    private static partial void LogRetrainStarted(ILogger logger, string name, int version, string dataset, int count);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Head {Name} v{Version} published after {Seconds:0.0} s")]
    private static partial void LogTrainingPublished(ILogger logger, string name, int version, double seconds);
}

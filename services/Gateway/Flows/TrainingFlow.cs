using System.Diagnostics;
using Graft.Gateway.Datasets;
using Graft.Gateway.Downstream;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Flows;

/// <summary>TrainHead: buffers the labelled images (the total, and for <c>auto</c> the examples per class, are known only
/// when the client stream ends), resolves the depth against the backbone, then streams spec, tail (fine-tuning depths)
/// and rows to HeadService while the backbone turns each image (and each augmented view) into the row's values in
/// concurrent batches, and relays HeadService's progress. Rows are written as they are extracted, never all held: a
/// fine-tuning row is the cut-point activations, 100-400 KB. The images are kept in the training-set store (unless the
/// spec opts out) so RetrainHead can run the same steps on them against another backbone.</summary>
public sealed partial class TrainingFlow(
    BackboneDownstream backbone, HeadsDownstream heads, HeadCatalog catalog, DatasetStore datasets, DatasetReferences references,
    IOptions<GatewayOptions> options, ILogger<TrainingFlow> logger)
{
    private const int MaxRowsPerMessage = 256;
    /// <summary>Rows per HeadService message are also bounded by size (a cut-point row is 100-400 KB; the message limit 16 MiB).</summary>
    private const int TargetMessageBytes = 4 << 20;

    public async Task TrainAsync(IAsyncStreamReader<TrainHeadRequest> requests, IServerStreamWriter<TrainProgress> progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (spec, examples) = await ReadAsync(requests, cancellationToken);
        // A client never names a stored set itself; the store's limits fail here, before any work.
        spec.Dataset = "";
        var prepared = datasets.ShouldKeep(spec) ? datasets.Prepare(spec, examples) : null;
        await RunAsync(spec, examples, prepared, progress, clock, cancellationToken);
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

        await RunAsync(retrain, examples, null, progress, clock, cancellationToken);
    }

    /// <summary>Resolves the depth against the backbone in use, keeps the training set (when prepared), then streams spec,
    /// tail and rows to HeadService and relays its progress until the version is published.</summary>
    private async Task RunAsync(
        HeadSpec spec, List<LabelledImage> examples, PreparedDataset? prepared, IServerStreamWriter<TrainProgress> progress, Stopwatch clock,
        CancellationToken cancellationToken)
    {
        var info = await DescribeTargetAsync(spec.BackboneFingerprint, cancellationToken);
        var plan = DepthRule.Resolve(spec, examples, info, options.Value);
        spec.BackboneFingerprint = info.Fingerprint;
        spec.Depth = plan.Depth;
        spec.DepthReason = plan.Reason;
        var views = 1 + (spec.HasAugment ? spec.Augment : 0);
        var values = plan.CutPoint?.Dimension ?? info.FeatureDimension;
        CheckSize(plan, examples.Count, views, values);
        LogTrainingStarted(logger, spec.Name, spec.Kind, examples.Count, plan.Depth.Name(), views - 1, plan.Reason);

        if (prepared is not null)
        {
            // Stored once the job is known to fit, before HeadService trains; released again below if training fails.
            spec.Dataset = (await datasets.SaveAsync(prepared, cancellationToken)).Id;
        }
        var job = new Job(spec, plan, examples, views, values, info.Fingerprint, progress, clock);
        try
        {
            var published = await heads.TrainAsync(spec, write => SendBodyAsync(job, write, cancellationToken), async step =>
            {
                step.ElapsedSeconds = clock.Elapsed.TotalSeconds;
                await progress.WriteAsync(step, cancellationToken);
            }, cancellationToken);
            LogTrainingPublished(logger, published.Name, published.Version, clock.Elapsed.TotalSeconds);
        }
        catch when (prepared is not null)
        {
            // No version names the set (unless an earlier one trained on the very same data): release it now.
            using var release = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await references.ReleaseAsync([spec.Dataset], release.Token);
            throw;
        }
        finally
        {
            // A new version (or a failed one that still changed nothing) may change which cut point a head takes.
            catalog.Invalidate();
        }
    }

    /// <summary>What one TrainHead call does, once its spec is resolved.</summary>
    private sealed record Job(
        HeadSpec Spec, DepthPlan Plan, List<LabelledImage> Examples, int Views, long ValuesPerRow, string Fingerprint,
        IServerStreamWriter<TrainProgress> Progress, Stopwatch Clock)
    {
        public int Runs => Examples.Count * Views;
    }

    /// <summary>Refuses, before any backbone run, a job whose rows HeadService could not hold.</summary>
    private void CheckSize(DepthPlan plan, int images, int views, long valuesPerRow)
    {
        var limit = options.Value.MaxTrainingValues;
        var total = (long)images * views * valuesPerRow;
        if (total > limit)
        {
            var what = plan.CutPoint is { } cut
                ? $"depth {plan.Depth.Name()} trains on the '{cut.Name}' activations, {valuesPerRow:N0} values ({valuesPerRow * 4 / 1024:N0} KB) per image"
                : $"depth {plan.Depth.Name()} trains on the final features, {valuesPerRow:N0} values per image";
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"this training job is too large: {what}, x {images} images x {views} view(s) = {total:N0} values ({total * 4.0 / (1 << 30):0.0} GiB), " +
                $"more than {limit:N0} ({GatewayOptions.Section}:MaxTrainingValues). Train on fewer images or fewer augmented views, " +
                "or use a frozen depth (probe or mlp: 512 values per image)."));
        }
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
        DepthRule.Validate(spec);
        // The Gateway alone decides a depth reason (from auto); a client's text would be stored as if it had.
        spec.DepthReason = "";

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

    /// <summary>One training set never mixes features of two backbones: the job is pinned to the backbone the spec names
    /// (a retrain during a rolling upgrade names the new one), else to the one that describes itself first. Behind a
    /// balancer of replicas with different backbones, Describe is asked again until a replica of the target answers.</summary>
    private async Task<BackboneInfo> DescribeTargetAsync(string target, CancellationToken cancellationToken)
    {
        var attempts = Math.Max(1, options.Value.FingerprintAttempts);
        BackboneInfo? info = null;
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            info = await backbone.DescribeAsync(cancellationToken);
            if (string.IsNullOrEmpty(target) || info.Fingerprint == target)
            {
                return info;
            }
        }
        throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"spec.backbone_fingerprint is '{target}' but no backbone replica serving it answered in {attempts} attempts " +
            $"({GatewayOptions.Section}:FingerprintAttempts; the last one serves '{info!.Fingerprint}'). Leave it empty to use the backbone in use, " +
            "or start a replica of that backbone."));
    }

    /// <summary>After the spec: the tail's pieces (fine-tuning depths) as they arrive from the backbone, then the rows,
    /// batch by batch as the backbone produces them. Each image's views are consecutive and share its source id.</summary>
    private async Task SendBodyAsync(Job job, Func<TrainHeadRowsRequest, Task> write, CancellationToken cancellationToken)
    {
        if (job.Plan.CutPoint is { } cut)
        {
            await SendTailAsync(job, cut.Name, write, cancellationToken);
        }

        var runs = job.Runs;
        var concurrency = options.Value.ExtractConcurrency;
        var rowsPerMessage = (int)Math.Clamp(TargetMessageBytes / (job.ValuesPerRow * sizeof(float) + 64), 1, MaxRowsPerMessage);
        var seed = job.Spec.HasSeed ? job.Spec.Seed : TrainingDefaults.Seed;
        string[] cutPoints = job.Plan.CutPoint is null ? [] : [job.Plan.CutPointName];
        var pending = new List<FeatureRow>(rowsPerMessage);
        await job.Progress.WriteAsync(Extracting(0, runs, job.Clock, Announce(job)), cancellationToken);

        for (var start = 0; start < runs; start += concurrency)
        {
            var count = Math.Min(concurrency, runs - start);
            // Concurrent Extract calls let the backbone batch them; its cache makes a repeated image (or view) free.
            var replies = await Task.WhenAll(Enumerable.Range(start, count).Select(run =>
                ExtractOneAsync(job.Examples[run / job.Views], run / job.Views + 1, cutPoints, View(run % job.Views, seed), job.Fingerprint, cancellationToken)));
            for (var k = 0; k < count; k++)
            {
                var run = start + k;
                var reply = replies[k];
                CheckFingerprint(job, reply.Fingerprint);
                pending.Add(Row(job.Examples[run / job.Views], reply, run / job.Views + 1, run % job.Views));
                replies[k] = null!; // let the activations go as soon as their row is built
                if (pending.Count == rowsPerMessage)
                {
                    await write(new TrainHeadRowsRequest { Rows = new FeatureRows { Rows = { pending } } });
                    pending.Clear();
                }
            }
            await job.Progress.WriteAsync(Extracting(start + count, runs, job.Clock), cancellationToken);
        }
        if (pending.Count > 0)
        {
            await write(new TrainHeadRowsRequest { Rows = new FeatureRows { Rows = { pending } } });
        }
    }

    /// <summary>The line the first progress message carries: the depth decision (auto) and the augmentation cost.</summary>
    private static string Announce(Job job)
    {
        var parts = new List<string>();
        if (job.Plan.Reason.Length > 0)
        {
            parts.Add(job.Plan.Reason);
        }
        if (job.Views > 1)
        {
            parts.Add($"{job.Views - 1} augmented view(s) per image: {job.Runs} backbone runs for {job.Examples.Count} images");
        }
        return string.Join("; ", parts);
    }

    private static Augmentation? View(int view, long seed) => view == 0 ? null : new Augmentation { View = view, Seed = seed };

    private static FeatureRow Row(LabelledImage example, ExtractReply reply, int source, int view)
    {
        var row = new FeatureRow { Source = source, Augmented = view > 0 };
        if (reply.CutFeatures.Count > 0)
        {
            row.Features.Add(reply.CutFeatures[0].Values);
        }
        else
        {
            row.Features.Add(reply.Features);
        }
        if (example.TargetCase == LabelledImage.TargetOneofCase.Value)
        {
            row.Value = example.Value;
        }
        else
        {
            row.Label = example.Label;
        }
        return row;
    }

    /// <summary>The tail's pieces as they arrive, from a replica of the job's backbone: a stream that starts with another
    /// backbone's tail (a mixed rollout behind a balancer) is dropped before anything is sent, and asked for again.</summary>
    private async Task SendTailAsync(Job job, string cutPoint, Func<TrainHeadRowsRequest, Task> write, CancellationToken cancellationToken)
    {
        var attempts = Math.Max(1, options.Value.FingerprintAttempts);
        for (var attempt = 1; ; attempt++)
        {
            await using var pieces = backbone.GetTailAsync(cutPoint, cancellationToken).GetAsyncEnumerator(cancellationToken);
            if (!await pieces.MoveNextAsync())
            {
                throw new RpcException(new Status(StatusCode.Unavailable, $"The backbone sent no tail for '{cutPoint}'; train again."));
            }
            if (pieces.Current.Fingerprint != job.Fingerprint && attempt < attempts)
            {
                continue;
            }
            do
            {
                CheckFingerprint(job, pieces.Current.Fingerprint);
                await write(new TrainHeadRowsRequest { Tail = pieces.Current });
            }
            while (await pieces.MoveNextAsync());
            return;
        }
    }

    private static void CheckFingerprint(Job job, string fingerprint)
    {
        if (fingerprint != job.Fingerprint)
        {
            throw new RpcException(new Status(StatusCode.Aborted,
                "the backbone changed while the images were being extracted (two fingerprints seen); send the examples again."));
        }
    }

    private async Task<ExtractReply> ExtractOneAsync(
        LabelledImage example, int number, IReadOnlyCollection<string> cutPoints, Augmentation? view, string fingerprint, CancellationToken cancellationToken)
    {
        try
        {
            // A replica of another backbone refuses at once (required_fingerprint) and the Extract is asked again, boundedly.
            return await backbone.ExtractFromAsync(example.Image, cutPoints, view, fingerprint, options.Value.FingerprintAttempts, cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            throw Invalid($"example {number}: {e.Status.Detail}");
        }
    }

    private static TrainProgress Extracting(int done, int total, Stopwatch clock, string message = "") => new()
    {
        Phase = TrainPhase.Extracting,
        ImagesDone = done,
        ImagesTotal = total,
        ElapsedSeconds = clock.Elapsed.TotalSeconds,
        Message = message,
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Training head {Name} ({Kind}) from {Count} images at depth {Depth}, {Augment} augmented view(s) each. {Reason}")]
    private static partial void LogTrainingStarted(ILogger logger, string name, HeadKind kind, int count, string depth, int augment, string reason);

    [LoggerMessage(EventId = 4520, Level = LogLevel.Information, Message = "Retraining head {Name} from the training set {Dataset} of v{Version} ({Count} examples)")]
    private static partial void LogRetrainStarted(ILogger logger, string name, int version, string dataset, int count);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Head {Name} v{Version} published after {Seconds:0.0} s")]
    private static partial void LogTrainingPublished(ILogger logger, string name, int version, double seconds);
}

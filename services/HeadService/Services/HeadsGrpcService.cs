using System.Threading.Channels;
using Graft.Heads.Registry;
using Graft.Heads.Serving;
using Graft.Heads.Tails;
using Graft.Heads.Training;
using Graft.V1;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace Graft.Heads.Services;

/// <summary>The <c>graft.v1.Heads</c> service: translates between the wire and the training, registry and serving
/// classes, and turns every refusal into its precise status.</summary>
public sealed class HeadsGrpcService(
    TrainingCoordinator coordinator, TrainingScheduler scheduler, HeadRegistry registry, HeadInference predictor,
    VersionTraffic traffic, IOptions<HeadOptions> options) : V1.Heads.HeadsBase
{
    /// <summary>Spec first, then rows; progress streams back. A second Train for a name already training gets ABORTED.</summary>
    public override async Task Train(IAsyncStreamReader<TrainHeadRowsRequest> requestStream, IServerStreamWriter<TrainProgress> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        await Guard(async () =>
        {
            if (!await requestStream.MoveNext(ct) || requestStream.Current.ItemCase != TrainHeadRowsRequest.ItemOneofCase.Spec)
            {
                throw HeadException.Invalid("The first Train message must be a HeadSpec (`spec`); feature rows follow it.");
            }
            var settings = TrainingSettings.FromSpec(requestStream.Current.Spec, options.Value);
            using var claim = scheduler.ClaimName(settings.Name);

            // Fine-tuning depths: the tail pieces come first, and the rows are checked against its input shape.
            var assembler = new TailAssembler(settings, options.Value);
            ReceivedTail? tail = null;
            try
            {
                TrainingSetBuilder? builder = settings.Depth.FineTunes() ? null : new TrainingSetBuilder(settings, options.Value);
                while (await requestStream.MoveNext(ct))
                {
                    var message = requestStream.Current;
                    switch (message.ItemCase)
                    {
                        case TrainHeadRowsRequest.ItemOneofCase.Tail when builder is not null && settings.Depth.FineTunes():
                            throw HeadException.Invalid($"A tail piece arrived after {builder.Rows} rows; the tail must come right after the spec, before any row.");
                        case TrainHeadRowsRequest.ItemOneofCase.Tail:
                            assembler.Add(message.Tail);
                            break;
                        case TrainHeadRowsRequest.ItemOneofCase.Rows:
                            if (builder is null)
                            {
                                tail = assembler.Complete();
                                builder = new TrainingSetBuilder(settings, options.Value, tail);
                            }
                            foreach (var row in message.Rows.Rows)
                            {
                                builder.Add(row);
                            }
                            break;
                        case TrainHeadRowsRequest.ItemOneofCase.Spec:
                            throw HeadException.Invalid($"Only one spec may be sent, first; a second one arrived after {builder?.Rows ?? 0} rows.");
                        default:
                            throw HeadException.Invalid("A Train message after the spec is empty; send `tail` pieces (fine-tuning depths) or `rows`.");
                    }
                }
                if (builder is null)
                {
                    tail = assembler.Complete();
                    builder = new TrainingSetBuilder(settings, options.Value, tail);
                }
                await TrainAndReport(settings, builder.Build(), tail, responseStream, ct);
            }
            finally
            {
                tail?.Dispose();
            }
            return true;
        });
    }

    private async Task TrainAndReport(TrainingSettings settings, TrainingSet data, ReceivedTail? tail, IServerStreamWriter<TrainProgress> responseStream, CancellationToken ct)
    {
        // The training thread must never wait on the network, so progress goes through an unbounded channel.
        var progress = Channel.CreateUnbounded<TrainProgress>(new UnboundedChannelOptions { SingleReader = true });
        var job = coordinator.RunAsync(settings, data, tail, e => progress.Writer.TryWrite(ToProgress(e)), ct);
        _ = job.ContinueWith(_ => progress.Writer.TryComplete(), TaskScheduler.Default);
        Exception? streamError = null;
        try
        {
            await foreach (var update in progress.Reader.ReadAllAsync(ct))
            {
                await responseStream.WriteAsync(update, ct);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            streamError = e;
        }
        // Keep the name claimed until the job has really stopped, so a retry never overlaps a finishing job.
        var manifest = await job;
        if (streamError is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(streamError);
        }
        await responseStream.WriteAsync(new TrainProgress
        {
            Phase = TrainPhase.Published,
            Epoch = manifest.Metrics.EpochsRun,
            EpochsTotal = manifest.Hyperparameters.Epochs,
            TrainLoss = manifest.Metrics.FinalTrainLoss,
            ElapsedSeconds = manifest.Metrics.TrainingSeconds,
            Published = ProtoMapping.ToVersionInfo(manifest),
        }, ct);
    }

    public override Task<HeadPredictReply> Predict(HeadPredictRequest request, ServerCallContext context)
        => Guard(() => Task.FromResult(predictor.Predict(request)));

    public override Task<ListHeadsReply> ListHeads(ListHeadsRequest request, ServerCallContext context)
        => Guard(() =>
        {
            var reply = new ListHeadsReply();
            foreach (var head in registry.Current.Heads.Values.OrderBy(h => h.Name, StringComparer.Ordinal))
            {
                reply.Heads.Add(Info(head, request.BackboneFingerprint));
            }
            return Task.FromResult(reply);
        });

    public override Task<HeadInfo> GetHead(GetHeadRequest request, ServerCallContext context)
        => Guard(() =>
        {
            var head = registry.RequireHead(request.Name);
            return Task.FromResult(Info(head, request.BackboneFingerprint));
        });

    public override Task<DeleteHeadReply> DeleteHead(DeleteHeadRequest request, ServerCallContext context)
        => Guard(() =>
        {
            if (request.Version < 0)
            {
                throw HeadException.Invalid($"version is {request.Version}; use 0 for the whole head or a positive version number.");
            }
            var reply = new DeleteHeadReply();
            reply.DeletedVersions.AddRange(registry.Delete(request.Name, request.Version));
            if (request.Version == 0)
            {
                traffic.Forget(request.Name);
            }
            return Task.FromResult(reply);
        });

    public override Task<HeadInfo> ActivateVersion(ActivateVersionRequest request, ServerCallContext context)
        => Guard(() =>
        {
            if (request.Version <= 0)
            {
                throw HeadException.Invalid($"version is {request.Version}; name an existing version (1 or more).");
            }
            var head = registry.Activate(request.Name, request.Version);
            return Task.FromResult(Info(head, ""));
        });

    public override Task<HeadInfo> SetTrafficSplit(HeadSplitRequest request, ServerCallContext context)
        => Guard(() =>
        {
            var mode = request.Mode switch
            {
                HeadSplitMode.Canary => SplitMode.Canary,
                HeadSplitMode.Shadow => SplitMode.Shadow,
                _ => throw HeadException.Invalid("mode is required: HEAD_SPLIT_MODE_CANARY (with percent) or HEAD_SPLIT_MODE_SHADOW."),
            };
            if (request.Version <= 0)
            {
                throw HeadException.Invalid($"version is {request.Version}; name the candidate version (1 or more).");
            }
            return Task.FromResult(Info(registry.SetSplit(request.Name, request.Version, mode, request.Percent), ""));
        });

    public override Task<HeadInfo> PromoteCandidate(HeadSplitActionRequest request, ServerCallContext context)
        => Guard(() => Task.FromResult(Info(registry.PromoteSplit(request.Name), "")));

    public override Task<HeadInfo> AbortSplit(HeadSplitActionRequest request, ServerCallContext context)
        => Guard(() => Task.FromResult(Info(registry.AbortSplit(request.Name), "")));

    private HeadInfo Info(HeadEntry head, string fingerprint)
        => ProtoMapping.ToHeadInfo(head, fp => predictor.ServingVersion(head, fp), fingerprint, traffic.For(head.Name));

    /// <summary>Streams one version for export: a <see cref="HeadExport"/> (manifest, normalisation), then every weight
    /// tensor in pieces of at most <see cref="ExportChunkValues"/> values. Version 0 means the serving version.</summary>
    public override Task ExportVersion(ExportVersionRequest request, IServerStreamWriter<HeadExportChunk> responseStream, ServerCallContext context)
        => Guard(async () =>
        {
            var ct = context.CancellationToken;
            if (request.Version < 0)
            {
                throw HeadException.Invalid($"version is {request.Version}; use 0 for the serving version or a positive version number.");
            }
            var head = registry.RequireHead(request.Name);
            var version = request.Version == 0 ? predictor.ServingVersion(head) : request.Version;
            var entry = head.Find(version) ?? throw new HeadException(HeadErrorKind.NotFound, version == 0
                ? $"Head '{head.Name}' has no loadable version to export; retrain it or activate a good version."
                : $"Head '{head.Name}' has no version {version}; its versions are {string.Join(", ", head.Versions.Select(v => v.Version))}.");
            if (entry.Manifest is { FineTuned: true } fineTuned)
            {
                // The export format describes an MLP on the final features; a fine-tuned version also needs its
                // retrained backbone layers in the composed graph, which Gateway.ExportHead does not build yet.
                throw new HeadException(HeadErrorKind.FailedPrecondition,
                    $"Head '{head.Name}' v{version} fine-tunes the backbone from {fineTuned.CutPoint} (depth {fineTuned.Depth.Name()}); export covers heads on the frozen final features (probe, mlp) only. " +
                    "Export a frozen-depth version, or train one to export.");
            }
            IReadOnlyList<NamedTensor> weights;
            try
            {
                weights = HeadWeights.Load(entry);
            }
            catch (InvalidDataException e)
            {
                throw new HeadException(HeadErrorKind.FailedPrecondition, $"Head '{head.Name}' v{version} cannot be exported: {e.Message} Export another version.");
            }
            var m = entry.Manifest!;
            await responseStream.WriteAsync(new HeadExportChunk
            {
                Head = new HeadExport
                {
                    Info = ProtoMapping.ToVersionInfo(entry),
                    HiddenSizes = { m.HiddenSizes },
                    FeatureMean = { m.FeatureMean },
                    FeatureStd = { m.FeatureStd },
                    TargetMean = m.TargetMean,
                    TargetStd = m.TargetStd,
                },
            }, ct);
            foreach (var tensor in weights)
            {
                for (var offset = 0; offset < tensor.Data.Length || offset == 0; offset += ExportChunkValues)
                {
                    var piece = new WeightsChunk { Name = tensor.Name, Shape = { tensor.Shape }, Offset = offset };
                    piece.Data.AddRange(tensor.Data.AsSpan(offset, Math.Min(ExportChunkValues, tensor.Data.Length - offset)).ToArray());
                    await responseStream.WriteAsync(new HeadExportChunk { Weights = piece }, ct);
                }
            }
            return true;
        });

    /// <summary>Largest number of float values per streamed weights piece (1 MiB), well under the message limit.</summary>
    public const int ExportChunkValues = 1 << 18;

    private static TrainProgress ToProgress(JobEvent e) => e switch
    {
        JobEvent.Queued q => new TrainProgress { Phase = TrainPhase.Queued, QueuePosition = q.JobsAhead },
        JobEvent.Epoch { Report: var r } => new TrainProgress
        {
            Phase = TrainPhase.Training,
            Epoch = r.Epoch,
            EpochsTotal = r.EpochsTotal,
            TrainLoss = r.TrainLoss,
            ValidationMetricName = r.MetricName,
            ValidationMetric = r.Metric,
            ElapsedSeconds = r.ElapsedSeconds,
        },
        JobEvent.Note n => new TrainProgress { Phase = TrainPhase.Training, EpochsTotal = n.EpochsTotal, Message = n.Message },
        _ => throw new ArgumentOutOfRangeException(nameof(e)),
    };

    private static async Task<T> Guard<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (HeadException e)
        {
            throw new RpcException(new Status(e.Kind switch
            {
                HeadErrorKind.InvalidArgument => StatusCode.InvalidArgument,
                HeadErrorKind.NotFound => StatusCode.NotFound,
                HeadErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
                HeadErrorKind.Aborted => StatusCode.Aborted,
                HeadErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
                _ => StatusCode.Unknown,
            }, e.Message));
        }
    }
}
